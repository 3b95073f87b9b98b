#!/usr/bin/env bash
# test.sh: what `make test` runs after building. Each step counts as passed or failed:
#   every busted spec, luacheck, cppcheck, the whole suite again under valgrind (no errors,
#   nothing definitely lost) and under ASan + UBSan (5.4), and the source rock installed with
#   luarocks into a scratch tree and run there (spec/support/rock.sh);
#   all on LUA_VERSION (5.1 to 5.4, or luajit). Then, for each Lua of TEST_ALSO (luajit when
#   LUA_VERSION is not), its build and every busted spec once more on it.
# It ends with the one line CI reads: "N passed, M failed", all of the above counted.
set -u
cd "$(dirname "$0")/../.."
LUA_VERSION=${LUA_VERSION:-5.4}
lua_of() { if [ "$1" = luajit ]; then echo luajit; else echo "lua$1"; fi; }
LUA=${LUA:-$(lua_of "$LUA_VERSION")}
LUA_API=${LUA_API:-$LUA_VERSION}   # the Lua version luarocks knows it by: 5.1 for LuaJIT
TEST_ALSO=${TEST_ALSO-}
BUSTED=${BUSTED:-/usr/bin/busted}
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

# suite NAME LUA BUILD: every spec on one Lua, with its build; busted's own summary gives the
# counts. The output is kept in build/test/NAME.log.
suite() {
  local name=$1 lua=$2 build=$3 summary ok bad errs
  "$lua" "$BUSTED" "--cpath=./$build/?.so" -o plainTerminal 2>&1 | tee "$log/$name.log"
  summary=$(grep -E '^[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' "$log/$name.log" | tail -n 1)
  if [ -n "$summary" ]; then
    read -r ok _ _ bad _ _ errs _ <<<"$summary"
    passed=$((passed + ok))
    failed=$((failed + bad + errs))
  else
    echo "FAILED: busted on $lua did not finish (build/test/$name.log)"
    failed=$((failed + 1))
  fi
}

# The specs.
echo "== every spec, on $LUA"
suite busted "$LUA" "build/$LUA_VERSION"

step luacheck make --no-print-directory -s lint-lua
step cppcheck make --no-print-directory -s lint-c

# The library inside LÖVE, Neovim and WeeChat (spec/hosts), each against the simulator.
step hosts env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LUA -u LUA_INCDIR \
  make --no-print-directory -s test-hosts

# The C under valgrind, and under ASan and UBSan: the whole suite once more for each.
step valgrind make --no-print-directory -s LUA_VERSION="$LUA_VERSION" test-valgrind
step asan env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LUA -u LUA_INCDIR \
  make --no-print-directory -s test-asan

# The API reference builds from the doc comments without a warning.
step doc make --no-print-directory -s doc

# The source rock (`make rock`) installs with luarocks into a scratch tree, and runs there.
step luarocks env LUA="$LUA" LUA_VERSION="$LUA_VERSION" LUA_API="$LUA_API" \
  LUA_INCDIR="${LUA_INCDIR:-}" bash spec/support/rock.sh

# The other Luas: the same C source built for each, then every spec on it. The build is a
# make of its own, from a clean slate: nothing of this make's command line (BUILD=, LUA_INCDIR=)
# may leak into it.
for version in $TEST_ALSO; do
  [ "$version" = "$LUA_VERSION" ] && continue
  echo "== every spec once more, on $(lua_of "$version")"
  step "build-$version" env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LUA -u LUA_INCDIR \
    make --no-print-directory LUA_VERSION="$version" all
  suite "busted-$version" "$(lua_of "$version")" "build/$version"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
