#!/usr/bin/env bash
# Round-trip cost benchmark: lua-faceswap headshot vs. a bare libcurl mime POST.
#
# Usage (from anywhere, no make needed):
#
#   bash spec/bench/run.sh
#
# Environment overrides:
#   N1, N2         the two request counts (default 200 and 1200, N2 > N1)
#   LUA            Lua 5.4 interpreter (default lua5.4)
#   CC             C compiler for the helpers (default gcc)
#   LUA_BASE_URL   base_url given to faceswap.new (default http://127.0.0.1:PORT/v1/faceswap)
#   BARE_PATH      path the bare client POSTs to (default /v1/faceswap/headshot)
#
# What it measures: instructions executed by the CLIENT process only
# (valgrind --tool=callgrind --trace-children=no; the server runs natively)
# at N1 and N2 requests; per-request cost is the slope
# (I(N2) - I(N1)) / (N2 - N1), so start-up, module loading and teardown
# cancel out.  Both clients talk to the same loopback server
# (spec/bench/server.c), which reads every request body in full before it
# answers with a fixed, realistic job JSON.
#
#   bare C  = spec/bench/bare_mime.c: one reused easy handle, body built with
#             curl_mime_* per request, response appended to a buffer and
#             dropped, nothing parsed.
#   lua     = spec/bench/headshot.lua: faceswap.new{...}; N x c:headshot(...)
#             (submit, receive, decode into a job object, check jobid).
#
# The Lua client is skipped (with a message) if build/5.4/faceswap/core.so
# has not been built yet.
#
# Then spec/bench/roundtrip.sh (the round trip beside bare libcurl + cjson.decode and Lua-cURL,
# on every Lua built; ROUNDTRIP_BENCH=0 skips it) and spec/bench/batch_cpu.sh (a batch's CPU
# per job beside a bare curl-multi loop; BATCH_CPU_BENCH=0 skips it).
# Then it runs spec/bench/concurrency.sh (batches against the simulator, and
# the cost of step(0) with many transfers in flight; a few minutes, see that
# file for its own settings). CONCURRENCY_BENCH=0 skips it. Then spec/bench/https.sh
# (HTTPS on loopback nginx; HTTPS_BENCH=0 skips it). Last, the commands' benchmarks
# (docs/commands.md): spec/bench/upload.sh and spec/bench/channels.lua (about two
# minutes); COMMANDS_BENCH=0 skips them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N1="${N1:-200}"
N2="${N2:-1200}"
BARE_PATH="${BARE_PATH:-/v1/faceswap/headshot}"

# The command line as given, for the report.
INVOCATION="N1=$N1 N2=$N2"
[[ "$LUA" == lua5.4 ]] || INVOCATION+=" LUA=$LUA"
INVOCATION+=" bash spec/bench/run.sh"


[[ "$N1" =~ ^[0-9]+$ && "$N2" =~ ^[0-9]+$ ]] || die "N1/N2 must be non-negative integers"
(( N2 > N1 )) || die "need N2 > N1 (got N1=$N1 N2=$N2)"
command -v valgrind >/dev/null || die "valgrind not found"
command -v pkg-config >/dev/null || die "pkg-config not found"

mkdir -p "$OUT"

# --- build the helpers ------------------------------------------------------
CURL_FLAGS="$(pkg-config --cflags --libs libcurl)" || die "pkg-config: libcurl not found"
"$CC" -O2 -Wall -Wextra -Werror -o "$OUT/server" "$HERE/server.c"
# shellcheck disable=SC2086  # CURL_FLAGS is a list of words on purpose
"$CC" -O2 -Wall -Wextra -Werror -o "$OUT/bare_mime" "$HERE/bare_mime.c" $CURL_FLAGS

# --- start the loopback server ---------------------------------------------
start_server server

BASE="http://127.0.0.1:$PORT"
BARE_URL="$BASE$BARE_PATH"
LUA_BASE_URL="${LUA_BASE_URL:-$BASE/v1/faceswap}"  # the same URL as the bare client

# --- measuring --------------------------------------------------------------

VG=(valgrind --tool=callgrind --trace-children=no)

# total instructions recorded in a callgrind out file
total_ir() {
    local f="$1" v
    v="$(awk '/^(summary|totals):/ { print $2; exit }' "$f")"
    if [[ -z "$v" ]] && command -v callgrind_annotate >/dev/null; then
        v="$(callgrind_annotate "$f" 2>/dev/null |
             awk '/PROGRAM TOTALS/ { gsub(/,/, "", $1); print $1; exit }')"
    fi
    [[ "$v" =~ ^[0-9]+$ ]] || die "no instruction total in $f"
    echo "$v"
}

declare -A IR CMD

# measure NAME N cmd...
measure() {
    local name="$1" n="$2"; shift 2
    local out="$OUT/callgrind.$name.$n.out" log="$OUT/callgrind.$name.$n.log"
    rm -f "$out"
    local cmd=("${VG[@]}" "--callgrind-out-file=$out" "$@")
    echo "  $name x $n ..." >&2
    local s0 s1
    s0="$(served_count)"
    if ! "${cmd[@]}" > "$log" 2>&1; then
        cat "$log" >&2
        die "$name at N=$n failed (log: $log)"
    fi
    s1="$(served_count)"
    # A client that answers from anywhere but the wire, or sends extra
    # requests, would make the slope meaningless.
    (( s1 - s0 == n )) ||
        die "$name at N=$n: server answered $((s1 - s0)) requests, expected $n"
    IR["$name,$n"]="$(total_ir "$out")"
    CMD["$name,$n"]="${cmd[*]}"
}

CLIENTS=(bare)
measure bare "$N1" "$OUT/bare_mime" "$BARE_URL" "$N1"
measure bare "$N2" "$OUT/bare_mime" "$BARE_URL" "$N2"

CORE_SO="$ROOT/build/5.4/faceswap/core.so"
if [[ -f "$CORE_SO" ]]; then
    command -v "$LUA" >/dev/null || die "$LUA not found"
    CLIENTS+=(lua)
    # run from the repo root so the command line is the documented one
    cd "$ROOT"
    measure lua "$N1" "$LUA" spec/bench/headshot.lua "$LUA_BASE_URL" "$N1"
    measure lua "$N2" "$LUA" spec/bench/headshot.lua "$LUA_BASE_URL" "$N2"
else
    echo "run.sh: skipping the Lua client: ${CORE_SO#"$ROOT"/} not built yet" >&2
fi

# --- report -----------------------------------------------------------------
per_req() { # I(N1) I(N2) -> slope with one decimal
    awk -v a="$1" -v b="$2" -v n1="$N1" -v n2="$N2" \
        'BEGIN { printf "%.1f", (b - a) / (n2 - n1) }'
}

BARE_PER="$(per_req "${IR[bare,$N1]}" "${IR[bare,$N2]}")"

echo
echo "Round trip cost, instructions of the client process (callgrind), slope over N1=$N1 and N2=$N2 requests"
echo
echo "| client | Ir at N1=$N1 | Ir at N2=$N2 | Ir per request | ratio to bare C |"
echo "|---|--:|--:|--:|--:|"
for c in "${CLIENTS[@]}"; do
    case "$c" in
        bare) label="bare C (libcurl mime, parses nothing)" ;;
        lua)  label="lua-faceswap c:headshot()" ;;
    esac
    per="$(per_req "${IR[$c,$N1]}" "${IR[$c,$N2]}")"
    ratio="$(awk -v p="$per" -v b="$BARE_PER" 'BEGIN { printf "%.2f", p / b }')"
    printf '| %s | %s | %s | %s | %s |\n' "$label" "${IR[$c,$N1]}" "${IR[$c,$N2]}" "$per" "$ratio"
done
echo
echo "Command: \`$INVOCATION\`"
echo
echo "Measured with:"
echo
for c in "${CLIENTS[@]}"; do
    for n in "$N1" "$N2"; do
        echo "    ${CMD[$c,$n]}"
    done
done

# --- the round trip against its peers on every Lua, a batch's CPU (issue 20) ----
if [[ "${ROUNDTRIP_BENCH:-1}" != 0 ]]; then
    echo
    CC="$CC" bash "$HERE/roundtrip.sh"
fi
if [[ "${BATCH_CPU_BENCH:-1}" != 0 ]]; then
    echo
    CC="$CC" bash "$HERE/batch_cpu.sh"
fi

# --- the concurrency benchmarks ---------------------------------------------
if [[ "${CONCURRENCY_BENCH:-1}" != 0 ]]; then
    stop_server # the round-trip server is done with
    if [[ -f "$CORE_SO" ]]; then
        echo
        LUA="$LUA" CC="$CC" bash "$HERE/concurrency.sh"
    else
        echo "run.sh: skipping spec/bench/concurrency.sh: ${CORE_SO#"$ROOT"/} not built yet" >&2
    fi
fi

# --- the HTTPS benchmark (spec/bench/https.sh; docs/https.md) ----------------
if [[ "${HTTPS_BENCH:-1}" != 0 ]]; then
    echo
    LUA="$LUA" CC="$CC" bash "$HERE/https.sh"
fi

# --- the commands' benchmarks: uploads, and batches over several accounts (docs/commands.md) -
if [[ "${COMMANDS_BENCH:-1}" != 0 && -f "$CORE_SO" ]]; then
    echo
    LUA="$LUA" CC="$CC" bash "$HERE/upload.sh"
    echo
    "$LUA" "$HERE/channels.lua"
fi
