#!/usr/bin/env bash
# The headshot round trip against its peers, on every Lua (issue 20, target 1).
#
#   bash spec/bench/roundtrip.sh            (part of `make bench`, through spec/bench/run.sh)
#
# Environment: N1, N2 the two request counts (default 200 and 1200); LUAS the Lua builds to
# measure (default "5.1 5.2 5.3 5.4 luajit": each that has build/<v>/faceswap/core.so and an
# interpreter; `make LUA_VERSION=<v> all` builds one); CC.
#
# Instructions of the client process (valgrind --tool=callgrind --trace-children=no), per
# request as the slope (I(N2) - I(N1)) / (N2 - N1), so start-up cancels out. Every client
# talks to one loopback server (spec/bench/server.c, started here) that reads each whole
# request and answers the same 586-byte job; the server's count of answers is checked after
# each run. Per Lua, in the same run:
#   lua-faceswap   spec/bench/headshot.lua: client:headshot("portrait of a cat"), N times
#   libcurl+cjson  spec/bench/peer_curl_cjson.c built against that Lua: one easy handle,
#                  CURLOPT_POSTFIELDS, the same headers and body, cjson.decode in a Lua state
#                  (the limit: what the client does with nothing of its own)
#   Lua-cURL       spec/bench/peer_lcurl.lua: Debian's lua-curl 0.3 + lua-cjson (5.1, 5.2 only)
# Prints one markdown table: per Lua, each client's instructions per request and the ratios of
# lua-faceswap to each peer.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
N1="${N1:-200}"
N2="${N2:-1200}"
LUAS="${LUAS:-5.1 5.2 5.3 5.4 luajit}"

(( N2 > N1 )) || die "need N2 > N1"
command -v valgrind >/dev/null || die "valgrind not found"
mkdir -p "$OUT"

CURL_FLAGS="$(pkg-config --cflags --libs libcurl)" || die "pkg-config: libcurl not found"
"$CC" -O2 -Wall -Wextra -Werror -o "$OUT/server" "$HERE/server.c"

interp() { case "$1" in luajit) echo luajit ;; *) echo "lua$1" ;; esac; }
lua_flags() {
  case "$1" in
    luajit) pkg-config --cflags --libs luajit ;;
    *) echo "-I/usr/include/lua$1 -llua$1" ;;
  esac
}

start_server roundtrip
BASE="http://127.0.0.1:$PORT/v1/faceswap"


total_ir() {
  local v
  v="$(awk '/^(summary|totals):/ { print $2; exit }' "$1")"
  [[ "$v" =~ ^[0-9]+$ ]] || die "no instruction total in $1"
  echo "$v"
}

# slope NAME cmd... -> instructions per request (one decimal)
slope() {
  local name="$1"; shift
  local n a=0 b=0 s0 s1 out
  for n in "$N1" "$N2"; do
    out="$OUT/callgrind.roundtrip.$name.$n.out"
    echo "  $name x $n ..." >&2
    s0="$(served_count)"
    valgrind --tool=callgrind --trace-children=no --callgrind-out-file="$out" "$@" "$n" \
      > "$OUT/roundtrip.$name.$n.log" 2>&1 || { cat "$OUT/roundtrip.$name.$n.log" >&2; die "$name x $n failed"; }
    s1="$(served_count)"
    (( s1 - s0 == n )) || die "$name x $n: the server answered $((s1 - s0)) requests"
    if [[ "$n" == "$N1" ]]; then a="$(total_ir "$out")"; else b="$(total_ir "$out")"; fi
  done
  awk -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" 'BEGIN { printf "%.1f", (b - a) / (n2 - n1) }'
}

fmt() { LC_ALL=C awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) } print s r }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

cd "$ROOT"
ROWS=()
for v in $LUAS; do
  lua="$(interp "$v")"
  if ! command -v "$lua" >/dev/null || [[ ! -f "build/$v/faceswap/core.so" ]]; then
    echo "roundtrip.sh: skipping Lua $v (no $lua, or no build/$v/faceswap/core.so)" >&2
    continue
  fi
  # shellcheck disable=SC2046  # word lists on purpose
  "$CC" -O2 -Wall -Wextra -Werror -o "$OUT/peer_curl_cjson-$v" "$HERE/peer_curl_cjson.c" \
    $(lua_flags "$v") $CURL_FLAGS
  ours="$(slope "faceswap-$v" "$lua" spec/bench/headshot.lua "$BASE")"
  bare="$(slope "curl_cjson-$v" "$OUT/peer_curl_cjson-$v" "$BASE/headshot")"
  lcurl="" lratio=""
  if "$lua" -e 'require "curl"' 2>/dev/null; then
    lcurl="$(slope "lcurl-$v" "$lua" spec/bench/peer_lcurl.lua "$BASE/headshot")"
    lratio="**$(ratio "$ours" "$lcurl")**"
    lcurl="$(fmt "$lcurl")"
  fi
  ROWS+=("| $v | $(fmt "$ours") | $(fmt "$bare") | **$(ratio "$ours" "$bare")** | ${lcurl:-n/a} | ${lratio:-n/a} |")
done

echo
echo "Headshot round trip, plain http, kept alive: instructions of the client process per request (callgrind, slope over N1=$N1 and N2=$N2)"
echo
echo "| Lua | lua-faceswap | bare libcurl + cjson.decode | ratio (target <= 1.10) | Lua-cURL 0.3 + lua-cjson | ratio (target <= 1.0) |"
echo "|---|--:|--:|--:|--:|--:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Command: \`N1=$N1 N2=$N2 LUAS=\"$LUAS\" bash spec/bench/roundtrip.sh\`"
