#!/usr/bin/env bash
# Concurrency benchmarks: batches against the simulator, and the cost of step(0) with many
# transfers in flight. Run from anywhere after `make` (spec/bench/run.sh calls it last):
#
#   bash spec/bench/concurrency.sh
#
# 1. Concurrency: client:batch(JOBS prompts, {concurrency = 16, wait = {interval = P,
#    max_interval = P}}) against spec/support/simulator.lua answering every request after a
#    latency L, with jobs that take J seconds; then the same with concurrency 1 for contrast.
#    ideal = ceil(JOBS / concurrency) * (J + G), where the polling granularity G = P + L: two
#    looks at a job's status are one poll interval plus one request latency apart.
#    floor = ceil(JOBS / concurrency) * (J + L): a job seen done the moment it ends, one
#    request latency later. Timings are J = 1 s, L = 0.1 s, P = 0.1 s times SCALE.
# 2. Queue full: the same batch (concurrency 16) against a simulator that takes at most K
#    unfinished jobs per channel and answers 429 "queue full" beyond that.
#    ideal = ceil(QJOBS / K) * (J + G); 429s per job = the simulator's rejected / QJOBS.
# 3. Game-loop cost: instructions (callgrind) of one client:step(0) with T transfers in flight,
#    each connected, sent, and waiting for an answer that does not come (spec/bench/hold.c
#    holds every request); as the slope between M1 and M2 steps. Also the one step in which
#    libcurl's timers from the connects fire, and steps in which 1 or 8 transfers end.
#    spec/bench/steps.lua says exactly what is counted and what is asserted.
#
# Environment overrides:
#   SCALE      time scale for 1 and 2 (default 0.5: J = 0.5 s, L = P = 0.05 s)
#   JOBS       jobs of benchmark 1 (default 200)     CONCURRENCY  its concurrency (default 16)
#   K          queue size of benchmark 2 (default 4) QJOBS        its jobs (default 200)
#   TS         transfer counts of benchmark 3 (default "10 100 1000")
#   M1, M2     step counts of benchmark 3 (default 200 and 1200, M2 > M1)
#   ONLY       a comma-separated subset of "concurrency,queue,steps" (default all three)
#   LUA        Lua 5.4 interpreter (default lua5.4)   CC  C compiler (default gcc)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SCALE="${SCALE:-0.5}"
JOBS="${JOBS:-200}"
CONCURRENCY="${CONCURRENCY:-16}"
K="${K:-4}"
QJOBS="${QJOBS:-200}"
TS="${TS:-10 100 1000}"
M1="${M1:-200}"
M2="${M2:-1200}"
ONLY="${ONLY:-concurrency,queue,steps}"

wants() { [[ ",$ONLY," == *",$1,"* ]]; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; } # calc FORMAT EXPRESSION

[[ "$SCALE" =~ ^[0-9]*\.?[0-9]+$ ]] || die "SCALE must be a positive number"
for v in JOBS CONCURRENCY K QJOBS M1 M2; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
for t in $TS; do
    if ! [[ "$t" =~ ^[0-9]+$ ]] || (( t < 10 )); then die "TS: each T must be a number >= 10"; fi
done
(( M2 > M1 )) || die "need M2 > M1"
[[ -f "$ROOT/build/5.4/faceswap/core.so" ]] || die "build/5.4/faceswap/core.so missing: run make"
command -v "$LUA" >/dev/null || die "$LUA not found"
cd "$ROOT" # the command lines below are written relative to the repository root

J="$(calc %g "1 * $SCALE")"
L="$(calc %g "0.1 * $SCALE")"
P="$(calc %g "0.1 * $SCALE")"

# value KEY LINE: the value of KEY=... in a key=value line
value() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# batch JOBS CONCURRENCY [K]: one spec/bench/batch.lua run; its key=value line goes to LINE
# (not run in a subshell, so that COMMANDS keeps the command line)
COMMANDS=()
LINE=""
batch() {
    local cmd=("$LUA" spec/bench/batch.lua "$1" "$2" "$J" "$L" "$P" "${3:-0}")
    echo "  ${cmd[*]}" >&2
    COMMANDS+=("${cmd[*]}")
    LINE="$("${cmd[@]}")" || { echo "$LINE" >&2; die "batch run failed: ${cmd[*]}"; }
}

# --- 1. concurrency ---------------------------------------------------------------------
if wants concurrency; then
    echo "Benchmark 1: $JOBS headshots followed to completion, concurrency $CONCURRENCY and 1" >&2
    declare -A RUN
    batch "$JOBS" "$CONCURRENCY"
    RUN[$CONCURRENCY]="$LINE"
    if (( CONCURRENCY != 1 )); then
        batch "$JOBS" 1
        RUN[1]="$LINE"
    fi
    echo
    echo "Concurrency: $JOBS headshots, each followed to completion, against the simulator (job $J s," \
         "latency $L s before every answer; time scale $SCALE of 1 s / 100 ms), wait interval P = $P s"
    echo
    echo "| concurrency | wall s | ideal s | wall / ideal | floor s | wall / floor | requests (POST + GET) | connections opened | mean job s |"
    echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for c in "$CONCURRENCY" 1; do
        [[ -n "${RUN[$c]:-}" ]] || continue
        line="${RUN[$c]}"
        wall="$(value wall "$line")"
        ideal="$(value ideal "$line")"
        floor="$(calc %.3f "int(($JOBS + $c - 1) / $c) * ($J + $L)")"
        printf '| %s | %.2f | %.2f | **%.3f** | %.2f | %.3f | %s (%s + %s) | %s | %.3f |\n' \
            "$c" "$wall" "$ideal" "$(value ratio "$line")" "$floor" \
            "$(calc %.4f "$wall / $floor")" "$(value requests "$line")" \
            "$(value posts "$line")" "$(value polls "$line")" "$(value connections "$line")" \
            "$(value job_mean "$line")"
    done
    echo
    echo "ideal = ceil(jobs / concurrency) x (J + G) with polling granularity G = P + L = $(calc %g "$P + $L") s" \
         "(a poll interval plus the latency of the poll's own answer); floor = ceil(jobs / concurrency) x (J + L)," \
         "each job seen done the moment it ends. Target: wall / ideal <= 1.15 at concurrency $CONCURRENCY." \
         "mean job = from a headshot's answer to the client seeing the job completed."
fi

# --- 2. queue full ----------------------------------------------------------------------
if wants queue; then
    echo "Benchmark 2: $QJOBS headshots, concurrency $CONCURRENCY, at most $K running jobs" >&2
    batch "$QJOBS" "$CONCURRENCY" "$K"
    line="$LINE"
    echo
    echo "Queue full: $QJOBS headshots at concurrency $CONCURRENCY against the simulator with max_running = $K" \
         "(429 \"queue full\" beyond that), job $J s, latency $L s, P = $P s"
    echo
    echo "| K | wall s | ideal s | makespan / ideal | 429s | 429s per job | requests (POST + GET) | connections opened | retries (s slept) | failed items |"
    echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    printf '| %s | %.2f | %.2f | **%.3f** | %s | **%.3f** | %s (%s + %s) | %s | %s (%s) | %s |\n' \
        "$K" "$(value wall "$line")" "$(value ideal "$line")" "$(value ratio "$line")" \
        "$(value rejected "$line")" "$(calc %.4f "$(value rejected "$line") / $QJOBS")" \
        "$(value requests "$line")" "$(value posts "$line")" "$(value polls "$line")" \
        "$(value connections "$line")" "$(value retries "$line")" "$(value retry_sleep "$line")" \
        "$(value failed "$line")"
    echo
    echo "ideal = ceil(jobs / K) x (J + G), G = P + L. Targets: makespan / ideal <= 1.25, 429s per job <= 1."
fi

# --- 3. step(0) cost --------------------------------------------------------------------
if wants steps; then
    command -v valgrind >/dev/null || die "valgrind not found"
    command -v callgrind_annotate >/dev/null || die "callgrind_annotate not found"
    [[ -f /usr/include/valgrind/callgrind.h ]] || die "valgrind/callgrind.h not found (valgrind dev files)"
    mkdir -p "$OUT"
    LUA_CFLAGS="$(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)"
    "$CC" -O2 -Wall -Wextra -Werror -o "$OUT/hold" "$HERE/hold.c"
    # shellcheck disable=SC2086  # LUA_CFLAGS is a list of words on purpose
    "$CC" -O2 -Wall -Wextra -Werror -shared -fPIC $LUA_CFLAGS -o "$OUT/cgmark.so" "$HERE/cgmark.c"

    # every transfer is a socket in the client and one in the server, plus valgrind's own
    tmax=0
    for t in $TS; do (( t > tmax )) && tmax=$t; done
    need=$(( tmax + 128 ))
    if (( $(ulimit -n) < need )); then
        ulimit -n "$need" 2>/dev/null || die "ulimit -n is $(ulimit -n), T=$tmax needs $need (ulimit -Hn: $(ulimit -Hn))"
    fi

    HOLD_PID=""
    cleanup() {
        if [[ -n "$HOLD_PID" ]]; then
            kill "$HOLD_PID" 2>/dev/null || true
            wait "$HOLD_PID" 2>/dev/null || true
        fi
    }
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    : > "$OUT/hold.port"
    "$OUT/hold" 0 > "$OUT/hold.port" &
    HOLD_PID=$!
    HOLD_PORT=""
    for _ in $(seq 1 100); do
        HOLD_PORT="$(head -n 1 "$OUT/hold.port" 2>/dev/null || true)"
        [[ "$HOLD_PORT" =~ ^[0-9]+$ ]] && break
        HOLD_PORT=""
        kill -0 "$HOLD_PID" 2>/dev/null || die "hold server exited before listening"
        sleep 0.05
    done
    [[ -n "$HOLD_PORT" ]] || die "hold server did not report its port"

    # total instructions of the part file whose trigger is "Client Request: NAME"
    declare -A IR
    part_ir() { # part_ir PREFIX NAME
        local f
        for f in "$1".*; do
            if grep -qx "desc: Trigger: Client Request: $2" "$f"; then
                awk '/^(summary|totals):/ { print $2; exit }' "$f"
                return
            fi
        done
        die "no callgrind part '$2' for $1"
    }
    part_file() { # part_file PREFIX NAME
        local f
        for f in "$1".*; do
            grep -qx "desc: Trigger: Client Request: $2" "$f" && { echo "$f"; return; }
        done
    }
    for t in $TS; do
        prefix="$OUT/callgrind.steps.$t.out"
        rm -f "$prefix" "$prefix".*
        cmd=(valgrind --tool=callgrind --collect-atstart=no "--callgrind-out-file=$prefix"
             "$LUA" spec/bench/steps.lua "http://127.0.0.1:$HOLD_PORT" "$t" "$M1" "$M2")
        echo "Benchmark 3: T = $t transfers in flight ..." >&2
        COMMANDS+=("${cmd[*]}")
        log="$OUT/callgrind.steps.$t.log"
        "${cmd[@]}" > "$log" 2>&1 || { tail -n 20 "$log" >&2; die "steps.lua T=$t failed (log: $log)"; }
        grep -qx ok "$log" || die "steps.lua T=$t did not finish (log: $log)"
        for w in timers "idle $M1" "idle $M2" "loop $M1" "loop $M2" "end 1 old" "end 1 new" "end 8 old"; do
            IR["$t,$w"]="$(part_ir "$prefix" "$w")"
        done
    done

    echo
    echo "Game-loop cost: instructions of one client:step(0) with T transfers in flight, all connected," \
         "sent and waiting (callgrind; slope over M1=$M1 and M2=$M2 steps)"
    echo
    echo "| T | Ir per idle step(0) | of which the loop | net per idle step(0) | the step when connect timers fire (per transfer) | step ending 1 (held longest) | step ending 1 (held shortest) | step ending 8 | per ended transfer |"
    echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for t in $TS; do
        idle="$(calc %.1f "(${IR[$t,idle $M2]} - ${IR[$t,idle $M1]}) / ($M2 - $M1)")"
        loop="$(calc %.1f "(${IR[$t,loop $M2]} - ${IR[$t,loop $M1]}) / ($M2 - $M1)")"
        printf '| %s | %s | %s | **%s** | %s (%s) | %s | %s | %s | %s |\n' "$t" "$idle" "$loop" \
            "$(calc %.1f "$idle - $loop")" "${IR[$t,timers]}" \
            "$(calc %.0f "(${IR[$t,timers]} - $idle) / $t")" "${IR[$t,end 1 old]}" \
            "${IR[$t,end 1 new]}" "${IR[$t,end 8 old]}" \
            "$(calc %.0f "(${IR[$t,end 8 old]} - $idle) / 8")"
    done
    echo
    echo "idle: the slope of M1 and M2 steps in which nothing changes (asserted: every step returned T," \
         "no task ended, T transfers running, the server still holds T requests on T connections, no" \
         "allocation); the loop: the same loop calling a stand-in that only returns. Connect timers: one" \
         "step(0) made 10.5 s after setup (libcurl's per-transfer timers from connecting, connect_timeout" \
         "= 10 s, all due at once; nothing changes); per transfer = (that step - idle step) / T." \
         "Ending k: the one step(0) after the server answered k held requests; per ended transfer =" \
         "(step ending 8 - idle step) / 8."

    # where an idle step goes, by shared object: self cost of the M2 window minus the M1 one.
    # Read from the part files themselves: callgrind_annotate (3.19) charges the frames that were
    # on the stack when collection was toggled on with the whole window, as if exclusive. Object
    # names are written once per run, in whichever part first used them, so all parts are read.
    t_show=""
    for t in $TS; do [[ "$t" == 100 ]] && t_show=100; done
    [[ -n "$t_show" ]] || t_show="${TS%% *}"
    prefix="$OUT/callgrind.steps.$t_show.out"
    by_object() { # by_object WANTED_FILE: "object Ir" lines of the self cost in that part
        local parts
        mapfile -t parts < <(printf '%s\n' "$prefix".* | sort -V)
        awk -v want="$1" '
            FNR == 1 { skip = 0 }
            /^c?ob=/ { # an object, named at its first mention, which may be a call target
                s = substr($0, index($0, "=") + 1)
                if (match(s, /^\([0-9]+\)/)) {
                    id = substr(s, 1, RLENGTH); rest = substr(s, RLENGTH + 2)
                    if (rest != "") name[id] = rest
                } else id = s
                if ($0 ~ /^ob=/) ob = id
                next
            }
            FILENAME != want { next }
            /^calls=/ { skip = 1; next }  # the next cost line is the call'"'"'s inclusive cost
            /^[0-9+*-]/ { if (skip) { skip = 0; next }; sum[ob] += $2; next }
            END { for (o in sum) print (o in name ? name[o] : o), sum[o] }
        ' "${parts[@]}"
    }
    echo
    echo "Where an idle step(0) goes at T = $t_show (self instructions by object, slope over M1 and M2):"
    echo
    echo "| object | Ir per idle step(0) |"
    echo "|---|--:|"
    LC_ALL=C join -a 1 -e 0 -o 0,1.2,2.2 \
        <(by_object "$(part_file "$prefix" "idle $M2")" | LC_ALL=C sort) \
        <(by_object "$(part_file "$prefix" "idle $M1")" | LC_ALL=C sort) |
        awk -v d="$((M2 - M1))" '{ v = ($2 - $3) / d; if (v >= 0.5) printf "%.1f %s\n", v, $1 }' |
        sort -rn | awk '{ printf "| %s | %s |\n", $2, $1 }'
fi

echo
echo "Commands (from the repository root):"
echo
for c in "${COMMANDS[@]}"; do echo "    $c"; done
