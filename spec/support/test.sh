#!/usr/bin/env bash
# test.sh: what `make test` runs after building. Each step counts as passed or failed:
#   every busted spec, luacheck, cppcheck, the whole suite again under valgrind (no errors,
#   nothing definitely lost), and the rockspec installed with luarocks into a scratch tree.
# It ends with the one line CI reads: "N passed, M failed".
set -u
cd "$(dirname "$0")/../.."
LUA=${LUA:-lua5.4}
LUA_VERSION=${LUA_VERSION:-5.4}
BUSTED=${BUSTED:-/usr/bin/busted}
CPATH_OPT="--cpath=./build/$LUA_VERSION/?.so"
passed=0
failed=0
log=build/test
mkdir -p "$log"

step() { # step NAME COMMAND...: one pass/fail check, output kept in build/test/NAME.log
  local name=$1
  shift
  if "$@" >"$log/$name.log" 2>&1; then
    passed=$((passed + 1))
    echo "ok: $name"
  else
    failed=$((failed + 1))
    echo "FAILED: $name (build/test/$name.log):"
    tail -n 40 "$log/$name.log"
  fi
}

# The specs: busted's own summary gives the counts.
"$LUA" "$BUSTED" "$CPATH_OPT" -o plainTerminal 2>&1 | tee "$log/busted.log"
summary=$(grep -E '^[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' "$log/busted.log" | tail -n 1)
if [ -n "$summary" ]; then
  read -r ok _ _ bad _ _ errs _ <<<"$summary"
  passed=$((passed + ok))
  failed=$((failed + bad + errs))
else
  echo "FAILED: busted did not finish"
  failed=$((failed + 1))
fi

step luacheck make --no-print-directory -s lint-lua
step cppcheck make --no-print-directory -s lint-c

# The C under valgrind: the whole suite once more, in the same process as the module.
step valgrind valgrind --quiet --error-exitcode=99 --leak-check=full \
  --errors-for-leak-kinds=definite --show-leak-kinds=definite --trace-children=no \
  "$LUA" "$BUSTED" "$CPATH_OPT" -o plainTerminal --exclude-tags=novalgrind

# The rockspec builds and installs the module where luarocks puts it.
rocktree=$(mktemp -d)
rockcheck() {
  # Debian keeps curl/curl.h under the multiarch include directory, where luarocks does not look
  local arch
  arch=$(gcc -print-multiarch)
  luarocks --lua-version "$LUA_VERSION" --tree "$rocktree" make --deps-mode=none \
    rockspec/lua-faceswap-*.rockspec CURL_INCDIR="/usr/include/$arch" CURL_LIBDIR="/usr/lib/$arch" &&
    LUA_PATH="$rocktree/share/lua/$LUA_VERSION/?.lua;$rocktree/share/lua/$LUA_VERSION/?/init.lua;;" \
    LUA_CPATH="$rocktree/lib/lua/$LUA_VERSION/?.so;;" \
    "$LUA" -e 'local f = require "faceswap"
      assert(package.searchpath("faceswap.core", package.cpath):find(os.getenv("TREE"), 1, true))
      print(f._VERSION)' | tee /dev/stderr | grep -qx "lua-faceswap $(ls rockspec | sed -E 's/lua-faceswap-(.*)-[0-9]+\.rockspec/\1/')"
}
TREE=$rocktree step luarocks rockcheck
rm -rf "$rocktree"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
