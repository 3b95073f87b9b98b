#!/usr/bin/env bash
# rock.sh: the source rock as a user gets it. Packs the checkout (`make rock`), installs the
# .src.rock into a scratch tree with `luarocks install --deps-mode=none` from another directory,
# then runs what it installed: the module (its core from that tree), the faceswap command, and
# faceswap-sim with a headshot sent to it. LuaRocks must give no warning, and its lint none. LUA_VERSION, LUA, LUA_API and LUA_INCDIR as in
# test.sh (LuaJIT is Lua 5.1 to luarocks, which would take lua5.1's headers: it gets LuaJIT's).
set -eu
cd "$(dirname "$0")/../.."
LUA_VERSION=${LUA_VERSION:-5.4}
if [ "$LUA_VERSION" = luajit ]; then LUA=${LUA:-luajit}; LUA_API=${LUA_API:-5.1}; else
  LUA=${LUA:-lua$LUA_VERSION}; LUA_API=${LUA_API:-$LUA_VERSION}; fi
version=$(ls rockspec | sed -E 's/lua-faceswap-(.*)-[0-9]+\.rockspec/\1/')
luarocks lint rockspec/lua-faceswap-*.rockspec
make --no-print-directory -s rock >/dev/null
scratch=$(mktemp -d)
sim_pid=
trap 'if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; fi; rm -rf "$scratch"' EXIT
cp build/rock/*.src.rock "$scratch/"
tree=$scratch/tree
jit=()
[ "$LUA_VERSION" = luajit ] && jit=(LUA_INCDIR="${LUA_INCDIR:-/usr/include/luajit-2.1}")
# Debian keeps curl/curl.h under the multiarch include directory, where luarocks does not look
arch=$(gcc -print-multiarch)
(cd "$scratch" && luarocks --lua-version "$LUA_API" --tree "$tree" install --deps-mode=none \
  ./*.src.rock CURL_INCDIR="/usr/include/$arch" CURL_LIBDIR="/usr/lib/$arch" "${jit[@]}") 2>&1 |
  tee "$scratch/install.log"
[ "${PIPESTATUS[0]}" -eq 0 ]
if grep -i 'warning' "$scratch/install.log"; then echo "luarocks warned (above)" >&2; exit 1; fi
cd "$scratch"
eval "$(luarocks --lua-version "$LUA_API" --tree "$tree" path)"
TREE=$tree "$LUA" -e 'local f = require "faceswap"
  assert(package.searchpath("faceswap.core", package.cpath):find(os.getenv("TREE"), 1, true))
  print(f._VERSION)' | tee /dev/stderr | grep -qx "lua-faceswap $version"
# luarocks wraps commands for its Lua of that version, lua5.1 for LuaJIT: there the scripts
# themselves run, faceswap under LuaJIT and the simulator under Lua 5.4 (which it needs)
faceswap=("$tree/bin/faceswap")
sim=("$tree/bin/faceswap-sim")
if [ "$LUA_VERSION" = luajit ]; then
  bin=$(echo "$tree"/lib/luarocks/rocks-"$LUA_API"/lua-faceswap/*/bin)
  faceswap=("$LUA" "$bin/faceswap")
  sim=(env -u LUA_CPATH LUA_PATH="$tree/share/lua/5.1/?.lua;$tree/share/lua/5.1/?/init.lua;;"
    lua5.4 "$bin/faceswap-sim")
fi
"${faceswap[@]}" --version | grep -qx "lua-faceswap $version"
"${sim[@]}" --port 0 --token rock-token >sim.out &
sim_pid=$!
for _ in $(seq 100); do grep -q '^listening ' sim.out && break; sleep 0.1; done
url=$(sed -n 's/^listening //p' sim.out)
[ -n "$url" ] || { echo "faceswap-sim did not start" >&2; exit 1; }
USEAPI_TOKEN=rock-token USEAPI_BASE_URL=$url "${faceswap[@]}" headshot "a cat" |
  tee /dev/stderr | grep -qE '^[0-9a-f]{32} started$'
echo "the source rock installs and runs: lua-faceswap $version on $LUA"
