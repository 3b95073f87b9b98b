#!/usr/bin/env bash
# faceswap.decode of a completed job's JSON against a bare cjson.decode of the same text, in
# instructions per decode (callgrind, slope between N1 and N2 decodes, so start-up cancels out).
#   bash spec/bench/decode.sh        (LUA=lua5.4, N1=1000, N2=6000)
set -euo pipefail
cd "$(dirname "$0")/../.."
LUA=${LUA:-lua5.4}
N1=${N1:-1000}
N2=${N2:-6000}
OUT=build/bench
mkdir -p "$OUT"
ir() { # total instructions of one run
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.decode.$1.$2.out" \
    "$LUA" spec/bench/decode.lua "$1" "$2" 2>&1 | sed -n 's/.*Collected : *//p'
}
echo "| decoder | instructions per decode | ratio |"
echo "|---|--:|--:|"
base=
for w in cjson faceswap; do
  a=$(ir "$w" "$N1")
  b=$(ir "$w" "$N2")
  per=$(( (b - a) / (N2 - N1) ))
  [ -n "$base" ] || base=$per
  echo "| $w.decode | $per | $(awk "BEGIN{printf \"%.2f\", $per/$base}") |"
done
echo
echo "Command: N1=$N1 N2=$N2 LUA=$LUA bash spec/bench/decode.sh"
