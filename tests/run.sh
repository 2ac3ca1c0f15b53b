#!/bin/sh
# Runs each Criterion test binary given (the difusa host: the Lua tests; a .sh: a shell test), shows its
# output, and ends with one line over all of them: "N passed, N failed".
passed=0; failed=0; status=0

# count OUTPUT RC WHAT: adds the last "<name>: N passed, N failed" line of OUTPUT to the totals.
count() {
    line=$(printf '%s\n' "$1" | grep '^[a-z_]*: [0-9]* passed, [0-9]* failed' | tail -n 1)
    if [ -z "$line" ]; then echo "$3 printed no summary (exit $2)"; failed=$((failed + 1)); status=1; return; fi
    p=$(printf '%s' "$line" | sed -n 's/^[a-z_]*: \([0-9]*\) passed.*/\1/p')
    f=$(printf '%s' "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    passed=$((passed + p)); failed=$((failed + f))
    [ "$2" -ne 0 ] && status=1
}

for t in "$@"; do
    case "$t" in
    */difusa) # the host: run the Lua tests under it
        out=$("$t" tests/lua/run.lua 2>&1); rc=$?
        printf '%s\n' "$out"
        count "$out" "$rc" "$t: the Lua tests"
        continue ;;
    *.sh) # a shell test that ends with "<name>: N passed, N failed"
        out=$(sh "$t" 2>&1); rc=$?
        printf '%s\n' "$out"
        count "$out" "$rc" "$t"
        continue ;;
    esac
    out=$("$t" --jobs 1 2>&1); rc=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep 'Synthesis: Tested:' | tail -n 1)
    if [ -z "$line" ]; then
        echo "$t: no Criterion summary (exit $rc)"; failed=$((failed + 1)); status=1; continue
    fi
    p=$(printf '%s' "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
    f=$(printf '%s' "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
    passed=$((passed + p)); failed=$((failed + f))
    [ "$rc" -ne 0 ] && status=1
done
echo "tests: $passed passed, $failed failed"
exit $status
