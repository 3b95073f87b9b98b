#!/usr/bin/env bash
# spec/fuzz/wire.sh: what `make fuzz-wire` runs. Both transports against a hostile server on
# the wire (spec/fuzz/answers.py): the libcurl one in ASan's Lua (build/asan, with UBSan), the
# nginx one (faceswap.resty) inside Debian's nginx. Each seed runs twice, its answers whole and
# then more of them changed and sent in small pieces (MUT=0.4 SPLIT=1). A run fails when the
# process dies (ASan's report), a call raises, or nginx fails a round; the answers sent are in
# build/fuzz/wire/SEED-MODE.log, one a line, to replay a finding.
#
#   bash spec/fuzz/wire.sh                    # seeds 1 and 2
#   WIRE_SEEDS="7 8 9" WIRE_CALLS=5000 WIRE_ROUNDS=20 bash spec/fuzz/wire.sh
#
# Settings: WIRE_SEEDS, WIRE_CALLS (calls a libcurl run, default 800), WIRE_ROUNDS (rounds of
# 200 calls a nginx run, default 3). About 3 minutes a seed.
set -u
cd "$(dirname "$0")/../.." || exit 2
SEEDS=${WIRE_SEEDS:-1 2}
CALLS=${WIRE_CALLS:-800}
ROUNDS=${WIRE_ROUNDS:-3}
OUT=build/fuzz/wire
mkdir -p "$OUT"
failed=0

# run SEED TAG MODE COUNT [VAR=VALUE...]: one server, one client run against it.
run() {
  local seed=$1 tag=$2 mode=$3 count=$4 port pid status
  shift 4
  exec 3< <(env "$@" python3 spec/fuzz/answers.py "$seed" "$OUT/$seed-$tag-$mode.log")
  pid=$!
  read -r port <&3
  if [ "$mode" = curl ]; then
    ASAN_OPTIONS=detect_leaks=0 LUA_CPATH="./build/asan/?.so;;" build/asan/asan_lua spec/fuzz/wire.lua curl "http://127.0.0.1:$port/" "$count" \
      > "$OUT/$seed-$tag-$mode.out" 2>&1
  else
    lua5.4 spec/fuzz/wire.lua nginx "http://127.0.0.1:$port/" "$count" > "$OUT/$seed-$tag-$mode.out" 2>&1
  fi
  status=$?
  kill "$pid" 2>/dev/null
  exec 3<&-
  if [ $status -eq 0 ]; then
    echo "seed $seed $tag $mode: $(head -n 1 "$OUT/$seed-$tag-$mode.out")"
  else
    echo "seed $seed $tag $mode: FAILED (exit $status), $OUT/$seed-$tag-$mode.out:"
    tail -n 30 "$OUT/$seed-$tag-$mode.out"
    failed=1
  fi
}

for seed in $SEEDS; do
  run "$seed" whole curl "$CALLS"
  run "$seed" whole nginx "$ROUNDS"
  run "$seed" pieces curl "$CALLS" MUT=0.4 SPLIT=1
  run "$seed" pieces nginx "$ROUNDS" MUT=0.4 SPLIT=1
done
[ $failed -eq 0 ] && echo "wire: no findings" || echo "wire: findings above"
exit $failed
