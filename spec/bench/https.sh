#!/usr/bin/env bash
# HTTPS benchmark (part of `make bench`; alone: `bash spec/bench/https.sh`). Loopback only.
#
# A throwaway CA (openssl) signs a certificate for 127.0.0.1. nginx, TLS 1.3 only, sits in
# front of the round-trip bench server (spec/bench/server.c, which reads each whole body and
# answers a fixed job) on three ports:
#   keep   HTTPS, kept-alive connections;
#   close  HTTPS, every answer with Connection: close, so each request needs a new connection
#          (its access log records $ssl_session_reused: "r" for a resumed TLS session);
#   plain  plain http, Connection: close (the step(0) comparison).
# Every client trusts BUNDLE = the system's ca-certificates.crt (145 CAs) + the throwaway CA, so
# it pays for a real-sized CA store.
#
# Callgrind, client process only, instructions per request as the slope between two counts:
#   kept-alive   N1, N2 requests over one connection (default 200, 1200)
#   new conn.    C1, C2 requests, each on a new connection (default 5, 20)
# clients: bare C (spec/bench/bare_mime.c: libcurl mime POSTs over one reused easy handle,
# with libcurl's default CA directory, and with it unset so that libcurl's CA cache works),
# kept-alive also bare libcurl + cjson.decode (spec/bench/peer_curl_cjson.c: the request bytes
# lua-faceswap sends, the answer decoded by lua-cjson in a Lua 5.4 state: the floor of a client
# that reads the answer with lua-cjson),
# lua-faceswap (spec/bench/headshot.lua, ca_file = BUNDLE), the curl tool (one process, the URL
# C times) and Python requests.Session.
# Also: CA-file opens per new connection (strace), sessions resumed (nginx's log), the worst
# single client:step(0) while T new connections open at once, HTTPS against plain http
# (spec/bench/https_steps.lua, CPU ms natively and instructions under callgrind), and what a
# new client pays once (faceswap.new and its first request).
# The trust store: the first HTTPS request of a new process and later new connections (session
# resumed, and full handshakes with resumption off in the bare program) with the bundle cached
# and with the hashed directory; lua-faceswap's default store is measured inside a mount
# namespace where STORE (below) is /etc/ssl/certs, as root (unshare -m).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT="$OUT/https"
N1="${N1:-200}"
N2="${N2:-1200}"
C1="${C1:-5}"
C2="${C2:-20}"
T="${T:-16}"
SYSTEM_BUNDLE="${SYSTEM_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
PYTHON="${PYTHON:-/usr/bin/python3}"   # Debian's, with python3-requests (not a pyenv shim)
CURL="${CURL:-/usr/bin/curl}"

for tool in valgrind nginx openssl strace curl python3 pkg-config; do
    command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] || die "$tool not found"
done
[[ -f "$ROOT/build/5.4/faceswap/core.so" ]] || die "build/5.4 not built (make)"
[[ -f "$SYSTEM_BUNDLE" ]] || die "$SYSTEM_BUNDLE missing (ca-certificates)"
"$PYTHON" -c 'import requests' 2>/dev/null || die "python3-requests not installed"

rm -rf "$OUT"
mkdir -p "$OUT/tls" "$OUT/nginx/logs" "$OUT/nginx/tmp"

# --- build, certificates ----------------------------------------------------------------
CURL_FLAGS="$(pkg-config --cflags --libs libcurl)"
LUA_CFLAGS="$(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)"
"$CC" -O2 -Wall -Wextra -Werror -o "$OUT/server" "$HERE/server.c"
# shellcheck disable=SC2086
"$CC" -O2 -Wall -Wextra -Werror -o "$OUT/bare_mime" "$HERE/bare_mime.c" $CURL_FLAGS
# shellcheck disable=SC2086
"$CC" -O2 -Wall -Wextra -Werror -shared -fPIC $LUA_CFLAGS -o "$OUT/cgmark.so" "$HERE/cgmark.c"
LUA_LIBS="$(pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)"
# shellcheck disable=SC2086
"$CC" -O2 -Wall -Wextra -Werror $LUA_CFLAGS -o "$OUT/peer_curl_cjson" "$HERE/peer_curl_cjson.c" \
    $CURL_FLAGS $LUA_LIBS

ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2)
(cd "$OUT/tls" &&
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -subj '/CN=lua-faceswap bench CA' \
    -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' &&
  openssl req -x509 "${ec[@]}" -CA ca.pem -CAkey ca.key -keyout server.key -out server.pem \
    -subj '/CN=127.0.0.1' -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost') >/dev/null 2>&1 ||
  die "openssl failed"
BUNDLE="$OUT/tls/bundle.pem"
cat "$SYSTEM_BUNDLE" "$OUT/tls/ca.pem" >"$BUNDLE"
NCAS="$(grep -c 'BEGIN CERTIFICATE' "$BUNDLE")"
# STORE: the system's store as update-ca-certificates lays it out (every certificate a file with
# its hash link, and ca-certificates.crt) plus the throwaway CA. Clients that use the default
# store run with it bind-mounted over /etc/ssl/certs in a mount namespace of their own
# (unshare, as root), so they verify the bench server exactly as a system client would.
STORE="$OUT/store"
mkdir -p "$STORE"
cp -L "$(dirname "$SYSTEM_BUNDLE")"/*.pem "$STORE/" 2>/dev/null || true
cp "$OUT/tls/ca.pem" "$STORE/zz-bench-ca.pem"
cp "$BUNDLE" "$STORE/ca-certificates.crt"
openssl rehash "$STORE" >/dev/null 2>&1 || die "openssl rehash failed"
NHASH="$(ls "$STORE" | grep -cE '^[0-9a-f]{8}\.[0-9]+$' || true)"
inns() { unshare -m --propagation private sh -c 'mount --bind "$0" /etc/ssl/certs && exec "$@"' "$STORE" "$@"; }
inns true || die "unshare -m / mount --bind not permitted (run as root)"

# --- servers ------------------------------------------------------------------------------
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
"$OUT/server" 0 >"$OUT/server.port" 2>"$OUT/server.log" &
PIDS+=($!)
for _ in $(seq 1 100); do [[ -s "$OUT/server.port" ]] && break; sleep 0.05; done
BACKEND="$(head -n 1 "$OUT/server.port")"
KEEP="$(free_port)"; CLOSE="$(free_port)"; PLAIN="$(free_port)"
USER_LINE=""; [[ "$(id -u)" == 0 ]] && USER_LINE="user root;"
cat >"$OUT/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
$USER_LINE
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $OUT/nginx/tmp/body;
  proxy_temp_path $OUT/nginx/tmp/proxy;
  fastcgi_temp_path $OUT/nginx/tmp/fastcgi;
  uwsgi_temp_path $OUT/nginx/tmp/uwsgi;
  scgi_temp_path $OUT/nginx/tmp/scgi;
  log_format reused '\$ssl_session_reused';
  upstream bench { server 127.0.0.1:$BACKEND; keepalive 16; }
  ssl_certificate $OUT/tls/server.pem;
  ssl_certificate_key $OUT/tls/server.key;
  ssl_protocols TLSv1.3;
  ssl_session_cache shared:TLS:1m;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  keepalive_requests 100000;
  server { listen 127.0.0.1:$KEEP ssl; location / { proxy_pass http://bench; } }
  server { listen 127.0.0.1:$CLOSE ssl; keepalive_timeout 0; access_log $OUT/nginx/logs/close.log reused;
           location / { proxy_pass http://bench; } }
  server { listen 127.0.0.1:$PLAIN; keepalive_timeout 0; location / { proxy_pass http://bench; } }
}
EOF
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
"$NGINX" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" 2>"$OUT/nginx/logs/stderr" &
PIDS+=($!)
for _ in $(seq 1 100); do
    curl -s -o /dev/null --cacert "$BUNDLE" "https://127.0.0.1:$KEEP/" && break
    sleep 0.05
done

PATH_="/v1/faceswap"
KEEP_URL="https://127.0.0.1:$KEEP$PATH_"
CLOSE_URL="https://127.0.0.1:$CLOSE$PATH_"
PLAIN_URL="http://127.0.0.1:$PLAIN$PATH_"

# --- measuring ------------------------------------------------------------------------------
total_ir() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }
declare -A IR
measure() { # measure NAME N ENV... -- CMD...: total instructions of the client process
    local name=$1 n=$2 out="$OUT/callgrind.$1.$2.out"
    shift 2
    local envs=()
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    echo "  $name x $n ..." >&2
    local wrap=()
    [[ $name == ns_* ]] && wrap=(inns)   # the default store: STORE mounted as the system's
    if ! "${wrap[@]}" env "${envs[@]}" valgrind --tool=callgrind --trace-children=no "--callgrind-out-file=$out" \
        "$@" >"$OUT/$name.$n.log" 2>&1; then
        cat "$OUT/$name.$n.log" >&2
        die "$name x $n failed"
    fi
    IR[$name,$n]="$(total_ir "$out")"
}
slope() { awk -v a="${IR[$1,$2]}" -v b="${IR[$1,$3]}" -v n1="$2" -v n2="$3" 'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
fmt() { sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta' <<<"$1"; }   # 1234567 -> 1,234,567

urls() { local i; for ((i = 0; i < $2; i++)); do echo "$1/headshot"; done; }
cat >"$OUT/requests_bench.py" <<'EOF'
import sys, requests
url, n, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = requests.Session()
for _ in range(n):
    r = s.post(url + "/headshot", files={"prompt": (None, "portrait of a cat")},
               headers={"Authorization": "Bearer test-token"}, verify=ca)
    assert r.status_code == 200, r.status_code
EOF

echo "https.sh: kept-alive, N1=$N1 N2=$N2" >&2
for n in "$N1" "$N2"; do
    measure bare_keep "$n" BARE_CAINFO="$BUNDLE" BARE_NO_CAPATH=1 -- "$OUT/bare_mime" "$KEEP_URL/headshot" "$n"
    measure cjson_keep "$n" BARE_CAINFO="$BUNDLE" BARE_NO_CAPATH=1 -- "$OUT/peer_curl_cjson" "$KEEP_URL/headshot" "$n"
    measure lua_keep "$n" FACESWAP_CA_FILE="$BUNDLE" -- "$LUA" "$HERE/headshot.lua" "$KEEP_URL" "$n"
done
echo "https.sh: new connections, C1=$C1 C2=$C2" >&2
for n in "$C1" "$C2"; do
    measure bare_default "$n" BARE_CAINFO="$BUNDLE" -- "$OUT/bare_mime" "$CLOSE_URL/headshot" "$n"
    measure bare_cache "$n" BARE_CAINFO="$BUNDLE" BARE_NO_CAPATH=1 -- "$OUT/bare_mime" "$CLOSE_URL/headshot" "$n"
    : >"$OUT/nginx/logs/close.log"
    measure lua_new "$n" FACESWAP_CA_FILE="$BUNDLE" -- "$LUA" "$HERE/headshot.lua" "$CLOSE_URL" "$n"
    cp "$OUT/nginx/logs/close.log" "$OUT/reused.lua.$n.log"
    # the curl tool: one process, the same form POSTed to the URL n times
    mapfile -t many < <(urls "$CLOSE_URL" "$n")
    measure curl_tool "$n" -- "$CURL" -s -f -o /dev/null --cacert "$BUNDLE" -H 'Authorization: Bearer test-token' \
        -H Expect: -F 'prompt=portrait of a cat' "${many[@]}"
    measure python "$n" -- "$PYTHON" "$OUT/requests_bench.py" "$CLOSE_URL" "$n" "$BUNDLE"
done

echo "https.sh: the first request of a new process" >&2
for n in 0 1; do
    measure first_bare_bundle "$n" BARE_CAINFO="$BUNDLE" BARE_NO_CAPATH=1 -- "$OUT/bare_mime" "$CLOSE_URL/headshot" "$n"
    measure first_bare_dir "$n" BARE_CAPATH="$STORE" -- "$OUT/bare_mime" "$CLOSE_URL/headshot" "$n"
    measure first_lua_file "$n" FACESWAP_CA_FILE="$BUNDLE" -- "$LUA" "$HERE/headshot.lua" "$CLOSE_URL" "$n"
    measure ns_first_lua "$n" -- "$LUA" "$HERE/headshot.lua" "$CLOSE_URL" "$n"
done
echo "https.sh: later new connections, the default store; full handshakes (no TLS session resumed)" >&2
for n in "$C1" "$C2"; do
    measure ns_lua_new "$n" -- "$LUA" "$HERE/headshot.lua" "$CLOSE_URL" "$n"
    measure full_bare_cache "$n" BARE_CAINFO="$BUNDLE" BARE_NO_CAPATH=1 BARE_NO_SESSION=1 -- "$OUT/bare_mime" "$CLOSE_URL/headshot" "$n"
    measure full_bare_dir "$n" BARE_CAPATH="$STORE" BARE_NO_SESSION=1 -- "$OUT/bare_mime" "$CLOSE_URL/headshot" "$n"
done

opens() { # how often CMD... opens the CA bundle
    local envs=()
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" strace -f -qq -e trace=openat -o "$OUT/strace.out" "$@" >/dev/null 2>&1 || die "strace $*"
    awk -v f="$BUNDLE" 'index($0, f) && !/ENOENT/ { c++ } END { print c + 0 }' "$OUT/strace.out"
}
OPEN_LUA="$(opens FACESWAP_CA_FILE="$BUNDLE" -- "$LUA" "$HERE/headshot.lua" "$CLOSE_URL" "$C2")"
OPEN_BARE="$(opens BARE_CAINFO="$BUNDLE" -- "$OUT/bare_mime" "$CLOSE_URL/headshot" "$C2")"
OPEN_CACHE="$(opens BARE_CAINFO="$BUNDLE" BARE_NO_CAPATH=1 -- "$OUT/bare_mime" "$CLOSE_URL/headshot" "$C2")"
REUSED="$(grep -c '^r$' "$OUT/reused.lua.$C2.log" || true)"
REUSE_ALL="$(wc -l <"$OUT/reused.lua.$C2.log")"

echo "https.sh: step(0) with $T new connections at once" >&2
steps_line() { "$LUA" "$HERE/https_steps.lua" "$@"; }
worst_ir() { # instructions of the last "worst" part of a callgrind run of https_steps.lua
    # (parts are numbered in dump order, and each "worst" step took longer than the one before),
    # then of its "first" part
    local prefix=$1 f n last=0 first=""
    for f in "$prefix".*; do
        n=${f##*.}
        grep -q '^desc: Trigger: Client Request: worst' "$f" && (( n > last )) && last=$n
        grep -qx 'desc: Trigger: Client Request: first' "$f" && first=$f
    done
    echo "$(total_ir "$prefix.$last") $(total_ir "$first")"
}
STEPS_TLS="$(steps_line "$CLOSE_URL" "$T" "$BUNDLE")"
STEPS_DEF="$(inns "$LUA" "$HERE/https_steps.lua" "$CLOSE_URL" "$T")"
STEPS_PLAIN="$(steps_line "$PLAIN_URL" "$T")"
(cd "$OUT" && valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$OUT/cg.steps.tls" \
    "$LUA" "$HERE/https_steps.lua" "$CLOSE_URL" "$T" "$BUNDLE" >"$OUT/steps.tls.log" 2>&1) || die "steps under callgrind (https)"
(cd "$OUT" && valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$OUT/cg.steps.plain" \
    "$LUA" "$HERE/https_steps.lua" "$PLAIN_URL" "$T" >"$OUT/steps.plain.log" 2>&1) || die "steps under callgrind (http)"
(cd "$OUT" && inns valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$OUT/cg.steps.def" \
    "$LUA" "$HERE/https_steps.lua" "$CLOSE_URL" "$T" >"$OUT/steps.def.log" 2>&1) || die "steps under callgrind (default store)"
read -r WORST_TLS FIRST_TLS <<<"$(worst_ir "$OUT/cg.steps.tls")"
read -r WORST_DEF FIRST_DEF <<<"$(worst_ir "$OUT/cg.steps.def")"
read -r WORST_PLAIN FIRST_PLAIN <<<"$(worst_ir "$OUT/cg.steps.plain")"
field() { awk -v k="$2" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' <<<"$1"; }

# --- report -----------------------------------------------------------------------------------
BK="$(slope bare_keep "$N1" "$N2")"; LK="$(slope lua_keep "$N1" "$N2")"; JK="$(slope cjson_keep "$N1" "$N2")"
BD="$(slope bare_default "$C1" "$C2")"; BC="$(slope bare_cache "$C1" "$C2")"
LN="$(slope lua_new "$C1" "$C2")"; CT="$(slope curl_tool "$C1" "$C2")"; PY="$(slope python "$C1" "$C2")"
echo
echo "HTTPS on loopback, nginx with TLS 1.3, a CA store of $NCAS certificates; instructions of the client"
echo "process (callgrind), slope over N1=$N1..N2=$N2 requests on one kept-alive connection and"
echo "C1=$C1..C2=$C2 requests each on a new connection."
echo
echo "| client | kept-alive, per request | ratio | new connection, per request | ratio to bare with CA cache | CA file opens in $C2 connections |"
echo "|---|--:|--:|--:|--:|--:|"
echo "| bare C, libcurl defaults (CA directory set) | | | $(fmt "$BD") | $(ratio "$BD" "$BC") | $OPEN_BARE |"
echo "| bare C, CAPATH unset (CA cache works) | $(fmt "$BK") | 1.00 | $(fmt "$BC") | 1.00 | $OPEN_CACHE |"
echo "| bare C + \`cjson.decode\` of the answer (the floor with lua-cjson) | $(fmt "$JK") | $(ratio "$JK" "$BK") | | | |"
echo "| **lua-faceswap** \`client:headshot()\` | $(fmt "$LK") | **$(ratio "$LK" "$BK")** ($(ratio "$LK" "$JK") of the floor) | $(fmt "$LN") | **$(ratio "$LN" "$BC")** | $OPEN_LUA |"
echo "| curl tool, one process | | | $(fmt "$CT") | $(ratio "$CT" "$BC") | |"
echo "| Python requests.Session | | | $(fmt "$PY") | $(ratio "$PY" "$BC") | |"
echo
echo "TLS sessions resumed (nginx \$ssl_session_reused), lua-faceswap, $C2 new connections: $REUSED of $REUSE_ALL"
echo
echo "| $T new connections at once, client:step(0) | worst step, instructions | worst step, CPU ms | steps | first request of a new client, instructions | CPU ms |"
echo "|---|--:|--:|--:|--:|--:|"
echo "| HTTPS, the default store (hashed directory) | $(fmt "$WORST_DEF") | $(field "$STEPS_DEF" worst_step_cpu_ms) | $(field "$STEPS_DEF" steps) | $(fmt "$FIRST_DEF") | $(field "$STEPS_DEF" first_cpu_ms) |"
echo "| HTTPS, ca_file = the bundle | $(fmt "$WORST_TLS") | $(field "$STEPS_TLS" worst_step_cpu_ms) | $(field "$STEPS_TLS" steps) | $(fmt "$FIRST_TLS") | $(field "$STEPS_TLS" first_cpu_ms) |"
echo "| plain http | $(fmt "$WORST_PLAIN") | $(field "$STEPS_PLAIN" worst_step_cpu_ms) | $(field "$STEPS_PLAIN" steps) | $(fmt "$FIRST_PLAIN") | $(field "$STEPS_PLAIN" first_cpu_ms) |"
echo
first() { awk -v a="${IR[$1,0]}" -v b="${IR[$1,1]}" 'BEGIN { printf "%.0f", b - a }'; }
FL="$(slope ns_lua_new "$C1" "$C2")"; FC="$(slope full_bare_cache "$C1" "$C2")"; FD="$(slope full_bare_dir "$C1" "$C2")"
echo
echo "The trust store: the first HTTPS request of a new process (instructions of the run with one request"
echo "less those of the run with none), and every later new connection; the store has $NCAS certificates,"
echo "$NHASH hash links in the directory."
echo
echo "| client, store | first request of a new process | whole process, one request | later new connection, session resumed | ratio | full handshake (no session resumed) | ratio |"
echo "|---|--:|--:|--:|--:|--:|--:|"
echo "| bare C, the bundle, CA cache | $(fmt "$(first first_bare_bundle)") | $(fmt "${IR[first_bare_bundle,1]}") | $(fmt "$BC") | 1.00 | $(fmt "$FC") | 1.00 |"
echo "| bare C, the hashed directory | $(fmt "$(first first_bare_dir)") | $(fmt "${IR[first_bare_dir,1]}") | | | $(fmt "$FD") | $(ratio "$FD" "$FC") |"
echo "| **lua-faceswap**, default store (directory chosen) | **$(fmt "$(first ns_first_lua)")** | $(fmt "${IR[ns_first_lua,1]}") | $(fmt "$FL") | **$(ratio "$FL" "$BC")** | | |"
echo "| lua-faceswap, \`ca_file\` = the bundle (cached) | $(fmt "$(first first_lua_file)") | $(fmt "${IR[first_lua_file,1]}") | $(fmt "$LN") | $(ratio "$LN" "$BC") | | |"
echo
echo "Command: \`N1=$N1 N2=$N2 C1=$C1 C2=$C2 T=$T bash spec/bench/https.sh\`"
