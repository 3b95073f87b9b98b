#!/usr/bin/env bash
# Upload benchmark: a saveid round trip with a 1 MiB image, lua-faceswap against a bare libcurl
# program posting the same file with libcurl's mime API (spec/bench/bare_mime.c with FILE).
#
#   bash spec/bench/upload.sh          (after make; N1, N2, LUA, CC as in run.sh)
#
# 1. Instructions of the client process (callgrind), per upload: the slope between N1 and N2
#    uploads, so start-up cancels out. Both post to spec/bench/server.c, which reads every
#    body in full before its fixed answer.
# 2. Peak memory per upload: the Lua client's peak resident memory (VmHWM) after 0, 1 and N1
#    uploads; the growth from 0 to 1 is what one upload of the file costs at its peak (the
#    image's bytes, the body holding them, and the transport's copy of the body).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
N1="${N1:-20}"
N2="${N2:-120}"
(( N2 > N1 )) || die "need N2 > N1"
[[ -f "$ROOT/build/5.4/faceswap/core.so" ]] || die "build/5.4/faceswap/core.so missing: run make"
mkdir -p "$OUT"
# shellcheck disable=SC2046  # pkg-config prints a list of flags
"$CC" -O2 -Wall -Wextra -Werror -o "$OUT/server" "$HERE/server.c"
# shellcheck disable=SC2046
"$CC" -O2 -Wall -Wextra -Werror -o "$OUT/bare_mime" "$HERE/bare_mime.c" $(pkg-config --cflags --libs libcurl)

# a 1 MiB "PNG": the signature, then bytes of a fixed pseudo-random sequence
IMAGE="$OUT/upload-1MiB.png"
"$LUA" - "$IMAGE" <<'LUA'
local x, t = 12345, { "\137PNG\r\n\26\n" }
for _ = 1, (1048576 - 8) // 8 do
  local b = {}
  for k = 1, 8 do x = (x * 1103515245 + 12345) % 2147483648; b[k] = (x >> 16) & 255 end
  t[#t + 1] = string.char(table.unpack(b))
end
io.open(arg[1], "wb"):write(table.concat(t)):close()
LUA

"$OUT/server" 0 > "$OUT/upload.port" 2> "$OUT/upload.server.log" &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [[ -s "$OUT/upload.port" ]] && break; sleep 0.05; done
PORT="$(head -n 1 "$OUT/upload.port")"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "server did not report its port"
BASE="http://127.0.0.1:$PORT/v1/faceswap"

ir() { # ir NAME N cmd...: total instructions of the client process
  local out="$OUT/callgrind.upload.$1.$2.out"; shift 2
  valgrind --tool=callgrind --trace-children=no --callgrind-out-file="$out" "$@" >/dev/null 2>&1 ||
    die "failed: $*"
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}
cd "$ROOT"
declare -A IR
for n in "$N1" "$N2"; do
  echo "  bare x $n, lua x $n ..." >&2
  IR[bare,$n]="$(ir bare "$n" "$OUT/bare_mime" "$BASE/saveid" "$n" "$IMAGE")"
  IR[lua,$n]="$(ir lua "$n" "$LUA" spec/bench/upload.lua "$BASE" "$n" "$IMAGE")"
done
slope() { awk -v a="$1" -v b="$2" -v n1="$N1" -v n2="$N2" 'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }'; }
BARE="$(slope "${IR[bare,$N1]}" "${IR[bare,$N2]}")"
LUAI="$(slope "${IR[lua,$N1]}" "${IR[lua,$N2]}")"
peak() { "$LUA" spec/bench/upload.lua "$BASE" "$1" "$IMAGE" | sed -n 's/^peak_kib=//p'; }
P0="$(peak 0)"; P1="$(peak 1)"; PN="$(peak "$N1")"

echo
echo "Upload: saveid with a 1 MiB image, instructions of the client process per upload (callgrind, slope over N1=$N1 and N2=$N2)"
echo
echo "| client | Ir per upload | ratio to bare C |"
echo "|---|--:|--:|"
echo "| bare C (libcurl mime, curl_mime_filedata) | $BARE | 1.00 |"
echo "| lua-faceswap c:saveid{idname, image = path} | $LUAI | $(awk -v a="$LUAI" -v b="$BARE" 'BEGIN { printf "%.2f", a / b }') |"
echo
echo "Peak resident memory of the Lua client: $P0 KiB after 0 uploads, $P1 KiB after 1 (+$((P1 - P0)) KiB for one 1024 KiB image), $PN KiB after $N1"
echo
echo "Command: \`N1=$N1 N2=$N2 bash spec/bench/upload.sh\`"
