#!/usr/bin/env bash
# Client CPU per job of a batch against a bare curl-multi C loop (issue 20, target 4).
#
#   bash spec/bench/batch_cpu.sh            (part of `make bench`, through spec/bench/run.sh)
#
# Environment: J1, J2 the two job counts (default 100 and 200); CONCURRENCY (16); POLLS (5: a
# job is "completed" at its 5th GET, so six requests a job); INTERVAL (0.05 s between polls);
# LUAS (default "5.4"); CC.
#
# Both clients talk to spec/bench/server.c started with POLLS: each POST makes a job, each GET
# answers it, "completed" at its POLLS-th. lua-faceswap runs spec/bench/batch_jobs.lua
# (client:batch(prompts, {concurrency, wait = {interval, max_interval = interval}})); the peer
# is spec/bench/peer_multi.c (curl multi, one easy handle a slot, the answers read with
# strstr; and built -DWITH_CJSON, each answer decoded by cjson.decode in a Lua state: the floor
# while lua-cjson reads every answer). Per client: instructions of the client process per job
# (callgrind, the slope between J1 and J2 jobs, so start-up cancels out), the server's count of
# requests per job checked, and its ratio to the bare loop and to the floor; and CPU time
# (user + system, no valgrind) of a run of J2 jobs, the best of 3.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
J1="${J1:-100}"
J2="${J2:-200}"
CONCURRENCY="${CONCURRENCY:-16}"
POLLS="${POLLS:-5}"
INTERVAL="${INTERVAL:-0.05}"
LUAS="${LUAS:-5.4}"
(( J2 > J1 )) || die "need J2 > J1"
mkdir -p "$OUT"
"$CC" -O2 -Wall -Wextra -Werror -o "$OUT/server" "$HERE/server.c"
# shellcheck disable=SC2046
"$CC" -O2 -Wall -Wextra -Werror -o "$OUT/peer_multi" "$HERE/peer_multi.c" $(pkg-config --cflags --libs libcurl)
# shellcheck disable=SC2046
"$CC" -O2 -Wall -Wextra -Werror -DWITH_CJSON -o "$OUT/peer_multi_cjson" "$HERE/peer_multi.c" \
  -I/usr/include/lua5.4 -llua5.4 $(pkg-config --cflags --libs libcurl)

start_server batch_cpu "$POLLS"
BASE="http://127.0.0.1:$PORT/v1/faceswap"


# per_job NAME cmd... (the job count is appended after the base URL) -> instructions per job
per_job() {
  local name="$1" n a=0 b=0 s0 s1 out; shift
  for n in "$J1" "$J2"; do
    out="$OUT/callgrind.batch.$name.$n.out"
    echo "  $name, $n jobs ..." >&2
    s0="$(served_count)"
    valgrind --tool=callgrind --trace-children=no --callgrind-out-file="$out" \
      "$@" "$BASE" "$n" "$CONCURRENCY" "$INTERVAL" > "$OUT/batch.$name.$n.log" 2>&1 ||
      { cat "$OUT/batch.$name.$n.log" >&2; die "$name, $n jobs failed"; }
    s1="$(served_count)"
    (( s1 - s0 == n * (POLLS + 1) )) ||
      die "$name, $n jobs: $((s1 - s0)) requests, expected $((n * (POLLS + 1)))"
    v="$(awk '/^(summary|totals):/ { print $2; exit }' "$out")"
    if [[ "$n" == "$J1" ]]; then a="$v"; else b="$v"; fi
  done
  awk -v a="$a" -v b="$b" -v n1="$J1" -v n2="$J2" 'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }'
}

# cpu_us cmd... -> microseconds of CPU (user + system) per job, best of 3 runs of J2 jobs
cpu_us() {
  local best="" i t
  for i in 1 2 3; do
    t="$( { /usr/bin/time -f '%U %S' "$@" "$BASE" "$J2" "$CONCURRENCY" "$INTERVAL" > /dev/null; } 2>&1 | tail -n 1)"
    t="$(awk -v u="${t% *}" -v s="${t#* }" -v n="$J2" 'BEGIN { printf "%.0f", (u + s) * 1e6 / n }')"
    [[ -z "$best" || "$t" -lt "$best" ]] && best="$t"
  done
  echo "$best"
}

cd "$ROOT"
peer_ir="$(per_job peer "$OUT/peer_multi")"
peer_cpu="$(cpu_us "$OUT/peer_multi")"
dec_ir="$(per_job peer_cjson "$OUT/peer_multi_cjson")"
dec_cpu="$(cpu_us "$OUT/peer_multi_cjson")"
# ratio A B -> A / B, two decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# (the floor: the loop that decodes every answer with cjson, as lua-faceswap must)
ROWS=("| bare curl-multi C loop (\`spec/bench/peer_multi.c\`), answers read with strstr | $peer_ir | 1.00 | $(ratio "$peer_ir" "$dec_ir") | $peer_cpu | 1.00 |"
      "| the same, each answer decoded by \`cjson.decode\` in a Lua 5.4 state (\`-DWITH_CJSON\`): the floor | $dec_ir | $(ratio "$dec_ir" "$peer_ir") | 1.00 | $dec_cpu | $(ratio "$dec_cpu" "$peer_cpu") |")
for v in $LUAS; do
  lua="lua$v"; [[ "$v" == luajit ]] && lua=luajit
  [[ -f "build/$v/faceswap/core.so" ]] || { echo "batch_cpu.sh: skipping Lua $v (not built)" >&2; continue; }
  ir="$(per_job "faceswap-$v" "$lua" spec/bench/batch_jobs.lua)"
  cpu="$(cpu_us "$lua" spec/bench/batch_jobs.lua)"
  ROWS+=("| lua-faceswap \`client:batch\`, Lua $v | $ir | **$(ratio "$ir" "$peer_ir")** | $(ratio "$ir" "$dec_ir") | $cpu | $(ratio "$cpu" "$peer_cpu") |")
done
echo
echo "Batch of headshots, concurrency $CONCURRENCY, $((POLLS + 1)) requests a job (a poll every $INTERVAL s): client CPU per job"
echo
echo "| client | instructions per job (slope, $J1 to $J2 jobs) | ratio (target <= 1.2) | against the floor | CPU per job, $J2 jobs, best of 3 (us) | ratio |"
echo "|---|--:|--:|--:|--:|--:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Command: \`J1=$J1 J2=$J2 CONCURRENCY=$CONCURRENCY POLLS=$POLLS INTERVAL=$INTERVAL LUAS=\"$LUAS\" bash spec/bench/batch_cpu.sh\`"
