# Sourced by the bench scripts (`. "$(dirname "${BASH_SOURCE[0]}")/common.sh"`): HERE (this
# folder), ROOT (the checkout), OUT (build/bench), LUA and CC with their defaults (lua5.4,
# gcc), and die MESSAGE, which prints it after the script's name and exits 1.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="$ROOT/build/bench"
LUA="${LUA:-lua5.4}"
CC="${CC:-gcc}"
die() { echo "${0##*/}: $*" >&2; exit 1; }

# stop_server: stops the server start_server started, if it runs.
stop_server() {
  [[ -z "${SERVER_PID:-}" ]] || { kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; } || true
  SERVER_PID=""
}

# start_server NAME [ARG...]: runs $OUT/server (spec/bench/server.c) on a free port with ARGs,
# killed when the script exits; sets SERVER_PID, SERVER_LOG ($OUT/NAME.server.log, its stderr)
# and PORT once it reports its port.
start_server() {
  local name=$1 port_file
  shift
  port_file="$OUT/$name.port"
  SERVER_LOG="$OUT/$name.server.log"
  : > "$port_file"
  : > "$SERVER_LOG"
  "$OUT/server" 0 "$@" > "$port_file" 2> "$SERVER_LOG" &
  SERVER_PID=$!
  trap stop_server EXIT
  trap 'exit 130' INT TERM
  PORT=""
  for _ in $(seq 1 100); do
    PORT="$(head -n 1 "$port_file" 2>/dev/null || true)"
    [[ "$PORT" =~ ^[0-9]+$ ]] && return 0
    PORT=""
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited before listening"
    sleep 0.05
  done
  die "server did not report its port"
}

# served_count: the number of requests the server has answered so far (asks it with SIGUSR1).
served_count() {
  local before after
  before="$(grep -c '^served ' "$SERVER_LOG" || true)"
  kill -USR1 "$SERVER_PID" || die "server is gone"
  for _ in $(seq 1 500); do
    after="$(grep -c '^served ' "$SERVER_LOG" || true)"
    if (( after > before )); then
      awk '/^served / { n = $2 } END { print n }' "$SERVER_LOG"
      return
    fi
    sleep 0.01
  done
  die "server did not report its request count"
}
