#!/usr/bin/env bash
# test.sh [PASS...]: what `make test` runs once the Debian packages are there.
#
# First the builds, one after another (make -j2 each): the core for every Lua (LUA_VERSION and
# TEST_ALSO, and LuaJIT and 5.3 for nginx and the hosts whatever they are), the ASan build and
# its host, the static archive and the specs' fork helper; so the passes after them only read
# build/ and never build the same file at once.
# Then the passes, side by side, each a background job with its log in build/test/PASS.log:
#   busted-V  the specs on Lua V: every spec on LUA_VERSION (but spec/docs/docs_spec.lua); on each
#             Lua of TEST_ALSO every spec but those tagged #external, whose work other programs
#             do (nginx, a host, make, a child lua5.4) the same whatever Lua runs busted
#   docs      spec/docs/docs_spec.lua on LUA_VERSION: every code block of the guides (the longest
#             spec file, some 110 s of waiting, so a pass of its own)
#   valgrind  LUA_VERSION's specs in the module's process under valgrind (make test-valgrind)
#   asan      5.4's under ASan and UBSan (make test-asan); both leave out #external, #lua_only
#             (no C of their own process) and #timing, and assert no upper bound on time
#   lint      luacheck and cppcheck (make lint)
#   hosts     the library inside LÖVE, Neovim and WeeChat (make test-hosts)
#   doc       the API reference builds without a warning (make doc)
#   luarocks  the source rock installed with luarocks into a scratch tree, and run there
#             (spec/support/rock.sh)
# The passes that burn CPU rather than wait (valgrind, asan, lint, doc, luarocks) run under
# nice, so the specs that wait on the simulator keep their pace on a busy machine.
# PASS...: only those passes (their builds first), e.g. `bash spec/support/test.sh valgrind`.
#
# A busted pass counts its specs (busted's own summary); any other pass counts as one. It
# ends with the one line CI reads: "N passed, M failed", all of the above counted.
set -u
cd "$(dirname "$0")/../.."
LUA_VERSION=${LUA_VERSION:-5.4}
lua_of() { if [ "$1" = luajit ]; then echo luajit; else echo "lua$1"; fi; }
LUA=${LUA:-$(lua_of "$LUA_VERSION")}
LUA_API=${LUA_API:-$LUA_VERSION}   # the Lua version luarocks knows it by: 5.1 for LuaJIT
TEST_ALSO=${TEST_ALSO-5.1 5.2 5.3 5.4 luajit}
BUSTED=${BUSTED:-/usr/bin/busted}
log=build/test
rm -rf "$log"
mkdir -p "$log"

# Every pass, LUA_VERSION's first; the others of TEST_ALSO after it.
others=()
for version in $TEST_ALSO; do
  [ "$version" = "$LUA_VERSION" ] || others+=("$version")
done
all=("busted-$LUA_VERSION")
for version in "${others[@]}"; do all+=("busted-$version"); done
all+=(docs valgrind asan lint hosts doc luarocks)
if [ $# -gt 0 ]; then wanted=("$@"); else wanted=("${all[@]}"); fi
for pass in "${wanted[@]}"; do
  case " ${all[*]} " in *" $pass "*) ;; *) echo "test.sh: no pass $pass (passes: ${all[*]})" >&2; exit 2 ;; esac
done

# A make of its own: nothing of an outer make's command line (BUILD=, LUA_INCDIR=) leaks in.
submake=(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LUA -u LUA_INCDIR make --no-print-directory)

# pass NAME COMMAND...: runs in the background; its output goes to build/test/NAME.log, its
# exit status to build/test/NAME.status. A pass still running after PASS_TIMEOUT seconds (1800)
# is stopped and fails (exit 124): a spec that hangs fails the run instead of outliving CI.
pass() {
  local name=$1
  shift
  (
    timeout --kill-after=10 "${PASS_TIMEOUT:-1800}" "$@" >"$log/$name.log" 2>&1
    echo "$?" >"$log/$name.status"
  ) &
}

# busted_pass NAME LUA BUILD [BUSTED-OPTION...]: the specs on one Lua with its build.
busted_pass() {
  local name=$1 lua=$2 build=$3
  shift 3
  pass "$name" "$lua" "$BUSTED" "--cpath=./$build/?.so" -o plainTerminal "$@"
}

# The builds, in the order the passes need them.
builds=("$LUA_VERSION" "${others[@]}")
case " ${builds[*]} " in *" luajit "*) ;; *) builds+=(luajit) ;; esac   # nginx, LÖVE, Neovim
case " ${builds[*]} " in *" 5.3 "*) ;; *) builds+=(5.3) ;; esac         # WeeChat
case " ${builds[*]} " in *" 5.4 "*) ;; *) builds+=(5.4) ;; esac         # the simulator's specs, static
build_all() {
  local version
  for version in "${builds[@]}"; do
    "${submake[@]}" -j2 LUA_VERSION="$version" all "build/$version/spec/forkhelp.so" || return 1
  done
  "${submake[@]}" -j2 LUA_VERSION=5.4 static examples || return 1
  case " ${wanted[*]} " in *" asan "*) "${submake[@]}" -j2 asan-build || return 1 ;; esac
}
echo "== building every Lua's core (log: $log/build.log)"
if ! build_all >"$log/build.log" 2>&1; then
  tail -n 40 "$log/build.log"
  echo "0 passed, 1 failed"
  exit 1
fi

started=$(date +%s)
for name in "${wanted[@]}"; do
  case $name in
    "busted-$LUA_VERSION") busted_pass "$name" "$LUA" "build/$LUA_VERSION" --exclude-pattern=docs_spec ;;
    docs) busted_pass docs "$LUA" "build/$LUA_VERSION" spec/docs/docs_spec.lua ;;
    busted-*)
      version=${name#busted-}
      busted_pass "$name" "$(lua_of "$version")" "build/$version" --exclude-tags=external,gc ;;
    valgrind) pass valgrind nice "${submake[@]}" -s LUA_VERSION="$LUA_VERSION" test-valgrind ;;
    asan) pass asan nice "${submake[@]}" -s test-asan ;;
    lint) pass lint nice "${submake[@]}" -s lint ;;
    hosts) pass hosts "${submake[@]}" -s test-hosts ;;
    doc) pass doc nice "${submake[@]}" -s doc ;;
    luarocks) pass luarocks nice env LUA="$LUA" LUA_VERSION="$LUA_VERSION" LUA_API="$LUA_API" \
      LUA_INCDIR="${LUA_INCDIR:-}" bash spec/support/rock.sh ;;
  esac
done
echo "== ${wanted[*]}: side by side, logs in $log/"
wait

passed=0
failed=0
for name in "${wanted[@]}"; do
  status=$(cat "$log/$name.status" 2>/dev/null || echo "?")
  summary=
  case $name in
    busted-* | docs | valgrind | asan)
      summary=$(grep -aE '^[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' "$log/$name.log" | tail -n 1) ;;
  esac
  if [ -n "$summary" ]; then
    read -r ok _ _ bad _ _ errs _ <<<"$summary"
    passed=$((passed + ok))
    failed=$((failed + bad + errs))
    # a pass that counted no failure but still failed (valgrind's errors, a leak, a crash at
    # exit) counts one more
    if [ "$status" != 0 ] && [ $((bad + errs)) -eq 0 ]; then failed=$((failed + 1)); fi
    echo "$name: $summary (exit $status)"
  elif [ "$status" = 0 ]; then
    passed=$((passed + 1))
    echo "$name: ok"
  else
    failed=$((failed + 1))
    echo "$name: FAILED (exit $status)"
  fi
  if [ "$status" != 0 ]; then
    echo "---- the end of $log/$name.log:"
    tail -n 40 "$log/$name.log"
    echo "----"
  fi
done
echo "== passes took $(($(date +%s) - started)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
