#!/usr/bin/env bash
# Frame budget benchmark: the worst client:step(0) of a 60 Hz frame loop while N headshots run
# against the simulator over plain http (spec/bench/frames.lua says exactly what runs), and the
# cost of an idle step(0). Part of `make bench`; alone, after `make`:
#
#   bash spec/bench/frames.sh
#
# Two workloads: all N spawned before the first frame (they submit, poll and download in
# lockstep: the worst case for one frame), and one spawned per frame. Each runs twice:
# natively, for CPU time per step(0) (os.clock), and under callgrind with every step(0) its own
# part file, for instructions per step(0) (the worst and the mean).
#
# Environment overrides: N (default 50), IDLE idle steps (default 20000), LUA (default lua5.4),
# CC (default gcc).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
N="${N:-50}"
IDLE="${IDLE:-20000}"

[[ "$N" =~ ^[1-9][0-9]*$ && "$IDLE" =~ ^[1-9][0-9]*$ ]] || die "N and IDLE must be positive integers"
[[ -f "$ROOT/build/5.4/faceswap/core.so" ]] || die "build/5.4/faceswap/core.so not built (make)"
command -v valgrind >/dev/null || die "valgrind not found"
[[ -f /usr/include/valgrind/callgrind.h ]] || die "valgrind/callgrind.h not found (valgrind dev files)"
mkdir -p "$OUT"
LUA_CFLAGS="$(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)"
# shellcheck disable=SC2086  # LUA_CFLAGS is a list of words on purpose
"$CC" -O2 -Wall -Wextra -Werror -shared -fPIC $LUA_CFLAGS -o "$OUT/cgmark.so" "$HERE/cgmark.c"
cd "$ROOT"

value() { awk -v k="$1" '$1 == k { print $2; exit }' "$2"; }        # value KEY FILE
worst_cpu() { awk '$1 == "worst1" { print $5 " ms (frame " $3 ")"; exit }' "$1"; }
COMMAS='function commas(n,  s, r) { s = sprintf("%d", n); r = ""
  while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
  return s r }' 
# instructions of each "frame K" part: "worst (frame K)" and the mean; and the idle part / IDLE
frame_ir() {
    local f desc
    for f in "$1".*; do
        desc="$(sed -n 's/^desc: Trigger: Client Request: //p' "$f")"
        printf '%s %s\n' "$(awk '/^(summary|totals):/ { print $2; exit }' "$f")" "$desc"
    done
}

rows=()
for per_frame in 0 1; do
    label="$N headshots, all spawned before frame 1"
    (( per_frame == 0 )) || label="$N headshots, $per_frame spawned per frame"
    native="$OUT/frames.$per_frame.native"
    "$LUA" spec/bench/frames.lua "$N" "$per_frame" "$IDLE" > "$native" ||
        die "frames.lua failed natively (output: $native)"
    prefix="$OUT/callgrind.frames.$per_frame.out"
    rm -f "$prefix" "$prefix".*
    valgrind --tool=callgrind --collect-atstart=no "--callgrind-out-file=$prefix" \
        "$LUA" spec/bench/frames.lua "$N" "$per_frame" "$IDLE" > "$OUT/frames.$per_frame.callgrind" \
        2> "$OUT/frames.$per_frame.callgrind.log" || die "frames.lua failed under callgrind (log: $OUT/frames.$per_frame.callgrind.log)"
    frame_ir "$prefix" > "$OUT/frames.$per_frame.ir"
    ir_worst="$(awk "$COMMAS"' $2 == "frame" && $1 > m { m = $1; k = $3 } END { printf "%s (frame %d)", commas(m), k }' "$OUT/frames.$per_frame.ir")"
    ir_mean="$(awk "$COMMAS"' $2 == "frame" { s += $1; n++ } END { printf "%s", commas(s / n) }' "$OUT/frames.$per_frame.ir")"
    idle_ir="$(awk -v m="$IDLE" "$COMMAS"' $2 == "idle" { printf "%s", commas($1 / m) }' "$OUT/frames.$per_frame.ir")"
    rows+=("| $label | $(value frames "$native") | $(worst_cpu "$native") | $(value mean_cpu_ms "$native") ms | $ir_worst | $ir_mean | $(value idle_step_us "$native") µs, $idle_ir |")
done

echo "Frame budget: client:step(0) once per frame at 60 Hz until $N headshots (submit, wait polling"
echo "every 0.5 s, download) are done against the simulator over plain http; CPU time natively, instructions"
echo "under callgrind (one part per step); then $IDLE step(0) on the idle client."
echo
echo "| workload | frames | worst step(0), CPU | mean step(0), CPU | worst step(0), instructions | mean, instructions | idle step(0): CPU, instructions |"
echo "|---|--:|--:|--:|--:|--:|--:|"
printf '%s\n' "${rows[@]}"
echo
echo "Command: \`bash spec/bench/frames.sh\` (N=$N IDLE=$IDLE; part of \`make bench\`)"
