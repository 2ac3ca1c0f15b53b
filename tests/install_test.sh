#!/bin/sh
# The install as users get it, from the build tree `make test` has just built:
#   make install into a temporary DESTDIR, then
#   - the example out-of-tree sampler plugin builds with `pkg-config --cflags difusa` and the installed
#     header alone, and the installed host loads it (DIFUSA_PLUGIN_PATH) beside the installed samplers;
#   - the stock lua5.4 requires the installed module, which finds the installed samplers;
#   - the man page is installed and names every option of `difusa --help`;
#   - make uninstall leaves nothing behind;
#   - `luarocks make` of difusa-scm-1.rockspec installs a rock tree whose module and host work.
# Ends with "install: N passed, N failed". Run from the repository root: sh tests/install_test.sh
passed=0; failed=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
ok() { passed=$((passed + 1)); echo "[PASS] install::$1"; }
ko() { failed=$((failed + 1)); echo "[FAIL] install::$1: $2"; }
mk() { env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make --no-print-directory -s "$@"; }

dest="$tmp/dest"; prefix=/usr/local; root="$dest$prefix"
if mk install DESTDIR="$dest" PREFIX="$prefix" > "$tmp/install.log" 2>&1; then
    ok make_install
else
    ko make_install "$(tail -n 5 "$tmp/install.log")"
fi

# the example plugin, against the installed header, found through the installed difusa.pc
cflags=$(PKG_CONFIG_LIBDIR="$root/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest" pkg-config --cflags difusa 2>&1)
mkdir -p "$tmp/plugins"
if cc -std=c11 -Wall -Wextra -Werror -O2 -fPIC -shared $cflags -o "$tmp/plugins/example_midpoint.so" \
    examples/sampler_plugin/example_midpoint.c -lm > "$tmp/cc.log" 2>&1; then
    case "$cflags" in
    *"$dest"*) ok example_plugin_builds_with_pkg_config ;;
    *) ko example_plugin_builds_with_pkg_config "pkg-config gave '$cflags', not the installed tree" ;;
    esac
else
    ko example_plugin_builds_with_pkg_config "$(head -n 5 "$tmp/cc.log")"
fi
list=$(DIFUSA_PLUGIN_PATH="$tmp/plugins" "$root/bin/difusa" --list-samplers 2>&1)
if printf '%s\n' "$list" | grep -q '^example_midpoint ' && printf '%s\n' "$list" | grep -q '^dpmpp_2m '; then
    ok installed_host_lists_installed_and_example_samplers
else
    ko installed_host_lists_installed_and_example_samplers "$(printf '%s\n' "$list" | head -n 3)"
fi

# the stock interpreter and the installed module (which finds <libdir>/difusa/samplers by itself)
n=$(LUA_CPATH="$root/lib/lua/5.4/?.so" lua5.4 -e 'local d = require "difusa"; io.write(#d.samplers())' 2>&1)
if [ "$n" -ge 20 ] 2>/dev/null; then ok lua54_requires_the_installed_module; else
    ko lua54_requires_the_installed_module "$n"; fi

# the man page: installed, well-formed, and naming every option of --help
man="$root/share/man/man1/difusa.1"
missing=""
for o in $("$root/bin/difusa" --help 2>&1 | grep -o -- '--[a-z-]*' | sort -u); do
    esc=$(printf '%s' "$o" | sed 's/^--/Fl -/')
    grep -q -- "$esc" "$man" 2>/dev/null || missing="$missing $o"
done
warn=$(groff -mdoc -Tutf8 -ww -z "$man" 2>&1)
if [ -f "$man" ] && [ -z "$missing" ] && [ -z "$warn" ]; then ok man_page_documents_every_option; else
    ko man_page_documents_every_option "missing:$missing ${warn:+groff: $warn}"; fi

if mk uninstall DESTDIR="$dest" PREFIX="$prefix" > "$tmp/uninstall.log" 2>&1 && \
    [ -z "$(find "$dest" -type f -o -type l)" ]; then
    ok make_uninstall_removes_everything
else
    ko make_uninstall_removes_everything "left: $(find "$dest" -type f -o -type l | head -n 3 | tr '\n' ' ')"
fi

# LuaRocks, as a Lua user installs it
if command -v luarocks > /dev/null 2>&1; then
    if luarocks --lua-version 5.4 make difusa-scm-1.rockspec --tree "$tmp/rocks" > "$tmp/rock.log" 2>&1; then
        n=$(LUA_CPATH="$tmp/rocks/lib/lua/5.4/?.so" lua5.4 -e 'local d = require "difusa"; io.write(#d.samplers())' 2>&1)
        h=$("$tmp/rocks/bin/difusa" --list-samplers 2>&1 | grep -c '^[a-z0-9_]* ')
        if [ "$n" -ge 20 ] 2>/dev/null && [ "$h" -ge 20 ]; then ok luarocks_make_installs_a_working_rock; else
            ko luarocks_make_installs_a_working_rock "module: $n samplers, host: $h"; fi
    else
        ko luarocks_make_installs_a_working_rock "$(tail -n 5 "$tmp/rock.log")"
    fi
else
    ko luarocks_make_installs_a_working_rock "luarocks is not installed (make deps installs it)"
fi

echo "install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
