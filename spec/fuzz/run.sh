#!/usr/bin/env bash
# spec/fuzz/run.sh: what `make fuzz` runs. Builds the libFuzzer harnesses (response, request, command) over the C core
# (csrc/*.c compiled in, under ASan and UBSan) into build/fuzz/, then runs each for
# FUZZ_SECONDS (default 60) on a scratch copy of its seed corpus, so the checked-in corpus never
# grows. Prints the executions of each harness and "findings: N"; exits non-zero on any crash,
# leak, timeout or out-of-memory.
#
#   bash spec/fuzz/run.sh                  # every harness, 60 s each
#   FUZZ_SECONDS=600 bash spec/fuzz/run.sh response
#   build/fuzz/response_fuzz build/fuzz/findings/response/crash-...   # replay one finding
#
# Settings: CLANG (default clang), FUZZ_SECONDS, FUZZ_FLAGS (extra libFuzzer flags).
set -u
cd "$(dirname "$0")/../.." || exit 2
CLANG=${CLANG:-clang}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_FLAGS=${FUZZ_FLAGS:-}
OUT=build/fuzz
HARNESSES=("$@")
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=(response request command)

ROCKSPEC=$(find rockspec -name "lua-faceswap-*.rockspec" | head -n 1)
VERSION=${ROCKSPEC#rockspec/lua-faceswap-}
VERSION=${VERSION%%-*}
LUA_INC=$(pkg-config --variable=includedir lua5.4 2>/dev/null)/lua5.4
[ -f "$LUA_INC/lua.h" ] || LUA_INC=/usr/include/lua5.4
LUA_LIBS=$(pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
CURL_CFLAGS=$(pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS=$(pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
# shellcheck disable=SC2206,SC2054 # CURL_CFLAGS is a list of flags; commas in -fsanitize=
CFLAGS=(-g -O1 -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror
        -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
        "-I$LUA_INC" -Icsrc $CURL_CFLAGS "-DFACESWAP_VERSION=\"$VERSION\"")

if ! command -v "$CLANG" >/dev/null; then
  echo "fuzz: $CLANG not found (apt-get install clang)" >&2
  exit 2
fi

# ---- build: the core once (instrumented for coverage), each harness linked against it ----
mkdir -p "$OUT/obj"
objs=()
for src in csrc/*.c; do
  [ "$src" = csrc/preload.c ] && continue # make static's, not the module's (as in the Makefile)
  obj="$OUT/obj/$(basename "${src%.c}").o"
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find csrc -name '*.h' -newer "$obj")" ] ||
     [ "$0" -nt "$obj" ]; then
    "$CLANG" "${CFLAGS[@]}" -fsanitize=fuzzer-no-link -c -o "$obj" "$src" || exit 2
  fi
  objs+=("$obj")
done
for h in "${HARNESSES[@]}"; do
  src=spec/fuzz/${h}_fuzz.c
  [ -f "$src" ] || { echo "fuzz: no harness $src" >&2; exit 2; }
  # shellcheck disable=SC2086 # the library lists are lists of flags
  "$CLANG" "${CFLAGS[@]}" -fsanitize=fuzzer -o "$OUT/${h}_fuzz" "$src" "${objs[@]}" \
    $LUA_LIBS $CURL_LIBS -lm || exit 2
done

# ---- run ----------------------------------------------------------------------------------
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
total=0
status=0
for h in "${HARNESSES[@]}"; do
  scratch=$OUT/scratch/$h
  findings=$OUT/findings/$h
  rm -rf "$scratch" "$findings"
  mkdir -p "$scratch" "$findings"
  cp spec/fuzz/corpus/"$h"/* "$scratch"/
  case $h in
    response) max_len=8192 ;;
    *) max_len=4096 ;;
  esac
  dict=()
  [ -f "spec/fuzz/$h.dict" ] && dict=(-dict="spec/fuzz/$h.dict")
  echo "fuzz: $h for ${FUZZ_SECONDS}s (log: $OUT/$h.log)"
  # shellcheck disable=SC2086
  "$OUT/${h}_fuzz" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
    -max_len=$max_len -print_final_stats=1 "${dict[@]}" -artifact_prefix="$findings/" \
    $FUZZ_FLAGS "$scratch" >"$OUT/$h.log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/$h.log" | tail -n 1)
  [ -n "$execs" ] || execs=$(grep -Eo '^#[0-9]+' "$OUT/$h.log" | tail -n 1 | tr -d '#')
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$OUT/$h.log" | tail -n 1)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$OUT/$h.log" | tail -n 1)
  found=$(find "$findings" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
          -o -name 'oom-*' \) | wc -l)
  echo "  $h: ${execs:-0} executions (${rate:-?}/s), $cov, findings: $found"
  if [ "$found" -gt 0 ] || [ "$rc" -ne 0 ]; then
    status=1
    [ "$found" -gt 0 ] && find "$findings" -type f -printf '    %p\n'
    grep -E 'MISMATCH|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' \
      "$OUT/$h.log" | head -n 5 | sed 's/^/    /'
    [ "$found" -gt 0 ] || echo "    libFuzzer exited $rc (see $OUT/$h.log)"
  fi
  total=$((total + found))
done
echo "findings: $total"
exit $status
