#!/bin/sh
# Turns the kernel files given into one C string, df_cl_source, in the order
# given (the Makefile sorts them by name).
printf '%s\n' '/* Generated from the .cl files in core/opencl/kernels by core/opencl/embed.sh: do not edit. */'
printf '%s\n' '__attribute__((visibility("hidden"))) const char df_cl_source[] ='
for f in "$@"; do
    printf '    "/* ---- %s ---- */\\n"\n' "$(basename "$f")"
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' "$f"
done
printf '%s\n' '    ;'
