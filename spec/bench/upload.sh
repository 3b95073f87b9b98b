#!/usr/bin/env bash
# Upload benchmark (issue 20, target 3; docs/benchmarks.md, "Uploads"): saveid with an image by
# its path, lua-faceswap against spec/bench/upload_peer.c, the C a programmer would write for
# it (libcurl, CURLOPT_READFUNCTION + pread of the same bytes), both built and run here, against
# the loopback bench server (spec/bench/server.c, which reads every body whole before its fixed
# answer).
#
#   bash spec/bench/upload.sh          (after make; R, LUA, CC as below)
#
# 1. CPU per upload (user + system, getrusage / os.clock inside each process, the uploads after
#    two warm-up ones) for a 1 MiB and a 10 MiB file: R runs of each, peer and client one after
#    the other; the medians, and the median of the R ratios (the machine is shared: a ratio of
#    two runs made together moves less than either). The peer as written (libcurl's 64 KiB send
#    buffer), and with the 256 KiB buffer lua-faceswap gives a file.
# 2. Instructions of the client process (callgrind, user space) and system calls (strace -c)
#    per upload, as the slope between two upload counts: what CPU time measures through the
#    noise of a shared machine, counted exactly (the kernel's work per call is the same bytes).
# 3. Peak resident memory (VmHWM) of the Lua client after those runs: the same for 1 and 10 MiB
#    when nothing holds the file.
# 4. A batch of 8 changebg items of 25 MiB at concurrency 8 (wait = false): the client's peak
#    over the idle client's (made, one request answered).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
R="${R:-7}"
[[ -f "$ROOT/build/5.4/faceswap/core.so" ]] || die "build/5.4/faceswap/core.so missing: run make"
mkdir -p "$OUT"
"$CC" -O2 -Wall -Wextra -Werror -o "$OUT/server" "$HERE/server.c"
# shellcheck disable=SC2046  # pkg-config prints a list of flags
"$CC" -O2 -Wall -Wextra -Werror -o "$OUT/upload_peer" "$HERE/upload_peer.c" $(pkg-config --cflags --libs libcurl)

# "PNG"s: the signature, then random bytes (sniffed as PNG; nothing reads further)
image() { # image FILE BYTES
  { printf '\211PNG\r\n\032\n'; head -c $(($2 - 8)) /dev/urandom; } > "$1"
}
image "$OUT/upload-1MiB.png" 1048576
image "$OUT/upload-10MiB.png" 10485760
image "$OUT/upload-25MiB.png" 26214400

"$OUT/server" 0 > "$OUT/upload.port" 2> "$OUT/upload.server.log" &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [[ -s "$OUT/upload.port" ]] && break; sleep 0.05; done
PORT="$(head -n 1 "$OUT/upload.port")"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "server did not report its port"
BASE="http://127.0.0.1:$PORT/v1/faceswap"
cd "$ROOT"

field() { sed -n "s/^$1=//p"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# the variants, one after the other in each run: the peer on the easy interface as written
# (libcurl's 64 KiB send buffer) and with the 256 KiB buffer lua-faceswap gives a file, the same
# peer driven through curl's multi interface by epoll as the client's transport drives it
# (PEER_MULTI=1) with each buffer, and the client
VARIANTS=(easy easy256 multi multi256 lua)
declare -A ENVS=([easy]="" [easy256]="PEER_ULBUF=262144" [multi]="PEER_MULTI=1"
                 [multi256]="PEER_MULTI=1 PEER_ULBUF=262144")
declare -A ROW PEAK CSW
for size in 1 10; do
  file="$OUT/upload-${size}MiB.png"
  n=$(( size == 1 ? 42 : 12 ))
  declare -A cpu=() sw=() rat=()
  for _ in $(seq 1 "$R"); do
    declare -A this=()
    for v in "${VARIANTS[@]}"; do
      if [[ $v == lua ]]; then
        out="$("$LUA" spec/bench/upload.lua "$BASE" "$n" "$file")"
        PEAK[$size]="$(field peak_kib <<< "$out")"
      else
        # shellcheck disable=SC2086  # ENVS holds NAME=VALUE words
        out="$(env ${ENVS[$v]} "$OUT/upload_peer" "$BASE/saveid" "$n" "$file")"
      fi
      this[$v]="$(field cpu_us_per_upload <<< "$out")"
      cpu[$v]+="${this[$v]} "
      sw[$v]+="$(field csw_per_upload <<< "$out") "
    done
    for v in easy easy256 multi multi256; do rat[$v]+="$(ratio "${this[lua]}" "${this[$v]}") "; done
  done
  row=""
  # shellcheck disable=SC2086  # the lists are words
  for v in "${VARIANTS[@]}"; do
    row+="$(median ${cpu[$v]}) "; CSW[$size,$v]="$(median ${sw[$v]})"
    echo "  ${size} MiB, $v: ${cpu[$v]}" >&2
  done
  # shellcheck disable=SC2086
  for v in easy easy256 multi multi256; do row+="$(median ${rat[$v]}) "; done
  ROW[$size]="$row"
  unset cpu sw rat
done

# counted: callgrind's instructions and strace's system calls, slope between n1 and n2 uploads
ir() { # ir OUTFILE cmd...  (in the environment $who's variant asks for)
  env "${MULTI_ENV[@]}" valgrind --tool=callgrind --callgrind-out-file="$1" "${@:2}" >/dev/null 2>&1 || die "failed: ${*:2}"
  awk '/^(summary|totals):/ { print $2; exit }' "$1"
}
calls() { # calls OUTFILE cmd...
  env "${MULTI_ENV[@]}" strace -f -c -o "$1" "${@:2}" >/dev/null 2>&1 || die "failed: ${*:2}"
  awk '$NF == "total" { print $4; exit }' "$1"
}
declare -A COUNT
for size in 1 10; do
  file="$OUT/upload-${size}MiB.png"
  # (1 MiB: 200 uploads between the two counts, so that the Lua collector's cycles, which a
  # window of 20 caught or missed whole, +-8k a call, weigh as they do in a long run)
  n1=$(( size == 1 ? 10 : 3 )); n2=$(( size == 1 ? 210 : 8 ))
  for who in peer multi lua; do
    MULTI_ENV=(); [[ $who != multi ]] || MULTI_ENV=(PEER_MULTI=1 PEER_ULBUF=262144)
    for n in "$n1" "$n2"; do
      case $who in
        peer) cmd=("$OUT/upload_peer" "$BASE/saveid" "$n" "$file") ;;
        multi) cmd=("$OUT/upload_peer" "$BASE/saveid" "$n" "$file") ;; # with MULTI_ENV
        *) cmd=("$LUA" spec/bench/upload.lua "$BASE" "$n" "$file") ;;
      esac
      COUNT[$who,$size,ir,$n]="$(ir "$OUT/callgrind.upload.$who.$size.$n" "${cmd[@]}")"
      COUNT[$who,$size,sys,$n]="$(calls "$OUT/strace.upload.$who.$size.$n" "${cmd[@]}")"
      COUNT[$who,$size,ew,$n]="$(awk '$NF == "epoll_wait" { print $4 }' "$OUT/strace.upload.$who.$size.$n")"
    done
    COUNT[$who,$size,ew]="$(awk -v a="${COUNT[$who,$size,ew,$n1]:-0}" -v b="${COUNT[$who,$size,ew,$n2]:-0}" \
      -v d=$(( n2 - n1 )) 'BEGIN { printf "%.1f", (b - a) / d }')"
    COUNT[$who,$size,ir]=$(( (COUNT[$who,$size,ir,$n2] - COUNT[$who,$size,ir,$n1]) / (n2 - n1) ))
    COUNT[$who,$size,sys]="$(awk -v a="${COUNT[$who,$size,sys,$n1]}" -v b="${COUNT[$who,$size,sys,$n2]}" \
      -v d=$(( n2 - n1 )) 'BEGIN { printf "%.1f", (b - a) / d }')"
  done
done

batch="$("$LUA" spec/bench/upload.lua --batch "$BASE" 8 "$OUT/upload-25MiB.png")"
IDLE="$(field idle_kib <<< "$batch")"
BPEAK="$(field peak_kib <<< "$batch")"

echo
echo "Uploads: saveid with an image by its path, CPU per upload (user + system, median of $R runs each)"
echo
echo "| file | C peer, easy, READFUNCTION + pread | easy, 256 KiB buffer | multi + epoll | multi + epoll, 256 KiB | lua-faceswap \`client:saveid\` | ratio to easy | to easy 256 KiB | to multi | to multi 256 KiB | peak RSS of the client |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for size in 1 10; do
  read -r e e2 m m2 l r1 r2 r3 r4 <<< "${ROW[$size]}"
  echo "| ${size} MiB | ${e} us | ${e2} us | ${m} us | ${m2} us | ${l} us | **${r1}** | ${r2} | ${r3} | ${r4} | ${PEAK[$size]} KiB |"
done
echo
echo "Context switches per upload (ru_nvcsw + ru_nivcsw over the timed uploads, median of $R runs)"
echo
echo "| file | easy | easy 256 KiB | multi | multi 256 KiB | lua-faceswap |"
echo "|---|--:|--:|--:|--:|--:|"
for size in 1 10; do
  echo "| ${size} MiB | ${CSW[$size,easy]} | ${CSW[$size,easy256]} | ${CSW[$size,multi]} | ${CSW[$size,multi256]} | ${CSW[$size,lua]} |"
done
echo
echo "Counted per upload (slope): instructions of the client process (callgrind), its system calls (strace -c) and epoll_waits among them; multi: the peer on the multi interface with the 256 KiB buffer"
echo
echo "| file | peer instructions | multi peer | lua-faceswap | ratio to the peer | to multi | peer system calls | multi peer | lua-faceswap | multi's epoll_wait | lua-faceswap's |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for size in 1 10; do
  echo "| ${size} MiB | ${COUNT[peer,$size,ir]} | ${COUNT[multi,$size,ir]} | ${COUNT[lua,$size,ir]} | $(ratio "${COUNT[lua,$size,ir]}" "${COUNT[peer,$size,ir]}") | $(ratio "${COUNT[lua,$size,ir]}" "${COUNT[multi,$size,ir]}") | ${COUNT[peer,$size,sys]} | ${COUNT[multi,$size,sys]} | ${COUNT[lua,$size,sys]} | ${COUNT[multi,$size,ew]} | ${COUNT[lua,$size,ew]} |"
done
echo
echo "Batch of 8 changebg items of 25 MiB at concurrency 8: idle client $IDLE KiB, peak $BPEAK KiB (+$(( (BPEAK - IDLE) / 1024 )) MiB)"
echo
echo "Command: \`R=$R bash spec/bench/upload.sh\`"
