#!/usr/bin/env bash
# The real-time benchmark (issue 14): fan-out throughput and latency of `chat-server all`
# (embedded mode: SQLite, in-process log and bus; release build) against the stock Node
# Socket.IO reference without persistence (node-memory) and with a SQLite insert before each ack
# (node-sqlite), all driven by the same load driver (../shared/bench/fanout.mjs), in one run; on
# request also the multi-process stack (chat-stack: gateway, auth, group, message and two chat
# replicas as processes on the local infrastructure, scripts/infra.sh, behind an nginx ingress).
# Measure the stack on freshly started stand-ins (scripts/infra.sh down first): after test runs
# have filled them with databases and topics, the same stack failed 25 sends/s that it passed at
# 50 on fresh ones.
#
#   scripts/bench-realtime.sh            the full sweep (about 15 minutes)
#   scripts/bench-realtime.sh --quick    two rates, 5 s each, 1k idle sockets (about 3 minutes)
#   scripts/bench-realtime.sh profile    perf profile of chat-server under BENCH_PROFILE_RATE
#                                        (driven by BENCH_DRIVER)
#
# Prints one table: per target the delivery latency p50/p99 at each rate, the highest rate with
# p99 < 50 ms and nothing lost, the ratios to node-sqlite and node-memory, the resident memory
# before the sweep, after it and after BENCH_RSS_IDLE s idle, the memory per idle socket; for
# chat-stack, the time a message spends per hop (socket -> command -> store -> fact -> emit,
# from the processes' chat_message_hop_seconds histograms) at each rate. Figures, not pass/fail.
#
# Settings (environment, with defaults):
#   BENCH_RATES          "500 1000 2000 3000 4000 6000"  sends/s swept (quick: "1000 3000")
#   BENCH_SECONDS        10          measured seconds per rate, after a 3 s warm-up (quick: 5)
#   BENCH_GROUPS         20          groups; raised for a rate above groups x members x 20/s
#   BENCH_MEMBERS        10          members per group (one socket each)
#   BENCH_TARGETS        "node-memory node-sqlite chat-server"; add chat-stack for the stack
#                        (it needs scripts/infra.sh and nginx; with it and no BENCH_RATES, the
#                        rates start at "25 50 100 200": the MongoDB stand-in stores ~50/s)
#   BENCH_IDLE_SOCKETS   "1000 10000"  idle-socket memory runs (quick: "1000"; "" skips)
#   FACTS_RELAY          kafka       how chat-stack's facts reach its chat replicas: the Kafka
#                        facts topic, or redis (pub/sub; the hop table says which)
#   BENCH_GIVE_UP        2           consecutive failing rates after which a target's sweep stops
#   BENCH_STACK_GIVE_UP  1           the same for chat-stack, whose backlog drains slowly
#   BENCH_RSS_IDLE       15          seconds idle after the sweep before memory is read again
#                                    (chat-server gives memory back 3 and 12 s into the quiet)
#   BENCH_DRIVER         node        the load driver: node (fanout.mjs) or rust (chat-tests'
#                        fanout binary, built here: the same flags and JSON line, on one thread
#                        like Node's, at a fraction of its cost); every target gets the same one.
#                        The Rust driver also reads the server's CPU time when its warm-up ends
#                        and when its last send is due: cores and CPU per send over the measured
#                        window alone. Profile mode drives with it too.
#   BENCH_YARDSTICK      ../shared/bench   where fanout.mjs and reference-server.mjs are
#   BENCH_NICE           10          niceness of everything started here (a shared machine)
#   BENCH_PROFILE_RATE   2500        profile: sends/s;  BENCH_PROFILE_SECONDS 15
#   BENCH_NO_BUILD       unset       set to 1 to use the chat-server already built
# Node dependencies (pinned in bench/node/package-lock.json) are installed under
# $SCALABLE_CHAT_CACHE/bench-node, outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export SCALABLE_CHAT_CACHE=${SCALABLE_CHAT_CACHE:-$HOME/.cache/scalable-chat}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SCALABLE_CHAT_CACHE/target}

mode=sweep
quick=
for a in "$@"; do
  case $a in
    --quick | quick) quick=1 ;;
    profile) mode=profile ;;
    *) echo "usage: $0 [--quick] [profile]" >&2; exit 2 ;;
  esac
done

RATES=${BENCH_RATES:-$([ -n "$quick" ] && echo "1000 3000" || echo "500 1000 2000 3000 4000 6000")}
SECONDS_PER_RATE=${BENCH_SECONDS:-$([ -n "$quick" ] && echo 5 || echo 10)}
NGROUPS=${BENCH_GROUPS:-20}
MEMBERS=${BENCH_MEMBERS:-10}
TARGETS=${BENCH_TARGETS:-node-memory node-sqlite chat-server}
if [ -z "${BENCH_RATES:-}" ] && [[ " $TARGETS " == *" chat-stack "* ]]; then RATES="25 50 100 200 $RATES"; fi
IDLE_SOCKETS=${BENCH_IDLE_SOCKETS-$([ -n "$quick" ] && echo "1000" || echo "1000 10000")}
GIVE_UP=${BENCH_GIVE_UP:-2}
RSS_IDLE=${BENCH_RSS_IDLE:-15}
STACK_GIVE_UP=${BENCH_STACK_GIVE_UP:-1}
YARDSTICK=${BENCH_YARDSTICK:-$repo/../shared/bench}
NODE_DIR=$SCALABLE_CHAT_CACHE/bench-node
DRIVER=${BENCH_DRIVER:-node}
case $DRIVER in node | rust) ;; *) echo "BENCH_DRIVER: node or rust" >&2; exit 2 ;; esac
PER_SOCKET_LIMIT=20 # fanout.mjs refuses a rate above sockets x 20/s (the chat role's default)

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

renice -n "${BENCH_NICE:-10}" -p $$ >/dev/null
# 10k idle sockets need 10k descriptors on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- node dependencies, chat-server
[ -f "$YARDSTICK/fanout.mjs" ] || die "no fanout.mjs in $YARDSTICK (set BENCH_YARDSTICK)"
. scripts/bench-node.sh
bench_node_install "$YARDSTICK/fanout.mjs" "$YARDSTICK/reference-server.mjs" bench/node/idle.mjs bench/node/table.mjs \
  bench/node/hops.mjs

CHAT_SERVER=$CARGO_TARGET_DIR/release/chat-server
RUST_DRIVER=$CARGO_TARGET_DIR/release/fanout
if [ "$mode" = profile ] || [[ " $TARGETS " == *" chat-server "* || " $TARGETS " == *" chat-stack "* ]]; then
  if [ -z "${BENCH_NO_BUILD:-}" ]; then
    log "building chat-server (release) in $CARGO_TARGET_DIR"
    cargo build --release -p chat-server --bin chat-server >&2
  fi
  [ -x "$CHAT_SERVER" ] || die "no $CHAT_SERVER"
fi
if [ "$DRIVER" = rust ]; then
  if [ -z "${BENCH_NO_BUILD:-}" ]; then
    log "building the Rust load driver (release) in $CARGO_TARGET_DIR"
    cargo build --release -p chat-tests --bin fanout >&2
  fi
  [ -x "$RUST_DRIVER" ] || die "no $RUST_DRIVER"
fi

# ---------------------------------------------------------------- servers
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-realtime.XXXXXX")
results=$work/results.jsonl
. scripts/bench-stack.sh
# pid_of: the target's server processes (chat-stack: its six roles, not the ingress).
declare -A pid_of base_of kind_of
ingress_pid=
stop_server() {
  # shellcheck disable=SC2086 # a list of pids
  stop_pids ${pid_of[$1]:-}
  pid_of[$1]=
  if [ "$1" = chat-stack ] && [ -n "$ingress_pid" ]; then stop_pids "$ingress_pid"; ingress_pid=; fi
}
stop_all() { for t in "${!pid_of[@]}"; do stop_server "$t"; done; }
trap 'stop_all; rm -rf "$work/data" "$work"/ref-*.db*' EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# start_server TARGET: starts it on a free port (a fresh store) and waits until it answers.
start_server() {
  local target=$1 port
  case $target in
    node-memory | node-sqlite)
      port=$(free_port)
      base_of[$target]=http://127.0.0.1:$port
      kind_of[$target]=ref
      (cd "$NODE_DIR" && exec env PORT="$port" REF_STORE="${target#node-}" REF_DB="$work/ref-$port.db" \
        node reference-server.mjs) >"$work/$target.log" 2>&1 &
      pid_of[$target]=$!
      wait_ready "$target" /health
      ;;
    chat-server)
      kind_of[$target]=chat
      rm -rf "$work/data"
      # Embedded mode: no infrastructure variable may be set.
      role_start all "$target" -u MONGODB_URI -u RABBITMQ_URI -u REDIS_URL -u KAFKA_BROKERS \
        CHAT_DATA_DIR="$work/data" CHAT_MAX_SOCKETS_PER_USER=10000
      pid_of[$target]=$pid
      base_of[$target]=http://127.0.0.1:$port
      ;;
    chat-stack)
      kind_of[$target]=chat
      # A fresh namespace (topics, queues, keys, database) per run.
      stack_start "bench$(date +%s)" CHAT_MAX_SOCKETS_PER_USER=10000
      ingress_start "$stack_gateway" "${stack_chats[@]}"
      pid_of[$target]="${stack_pids[*]}"
      base_of[$target]=http://127.0.0.1:$ingress_port
      # What settle watches beside the roles: the stand-ins a backlog drains through; all of
      # them poll a little when idle (consumers fetch every 10 ms), which settle discounts.
      settle_also[$target]="$stack_mongodb_pid $stack_kafka_pid"
      local a b
      sleep 2
      a=$(cpu_ticks "$target" "${pid_of[$target]} ${settle_also[$target]}"); sleep 5
      b=$(cpu_ticks "$target" "${pid_of[$target]} ${settle_also[$target]}")
      settle_floor[$target]=$(( (b - a) / 5 ))
      log "chat-stack: ${stack_names[*]} on ports ${stack_ports[*]}, ingress :$ingress_port"
      ;;
    *) die "unknown target $target" ;;
  esac
}

wait_ready() {
  for _ in $(seq 300); do
    curl -fsS -o /dev/null "${base_of[$1]}$2" 2>/dev/null && return 0
    kill -0 "${pid_of[$1]}" 2>/dev/null || { cat "$work/$1.log" >&2; die "$1 exited"; }
    sleep 0.1
  done
  die "$1 not ready at ${base_of[$1]}$2"
}

# The sum over the target's processes (or the given pids).
rss_mib() {
  # shellcheck disable=SC2086 # a list of pids
  pids_cat status ${2:-${pid_of[$1]}} | awk '/^VmRSS:/ { kb += $2 } END { printf "%.1f", kb / 1024 }'
}
cpu_ticks() {
  # shellcheck disable=SC2086
  pids_cat stat ${2:-${pid_of[$1]}} | awk '{ t += $14 + $15 } END { print t + 0 }'
}
pids_cat() { local file=$1 p; shift; for p in "$@"; do cat "/proc/$p/$file" 2>/dev/null || true; done; }
# settle_also: more processes settle watches; settle_floor: their idle use (ticks a second).
declare -A settle_also settle_floor
# Jiffies the whole machine spent busy (every core), from /proc/stat.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
HZ=$(getconf CLK_TCK)

# Waits (at most 120 s) until the target uses under 5 % of a core above its idle use: a
# saturated run leaves a backlog, which must not be billed to the next run.
settle() {
  local a b pids="${pid_of[$1]} ${settle_also[$1]:-}" floor=${settle_floor[$1]:-0}
  for _ in $(seq 120); do
    a=$(cpu_ticks "$1" "$pids"); sleep 1; b=$(cpu_ticks "$1" "$pids")
    [ $(( (b - a - floor) * 100 )) -lt $(( HZ * 5 )) ] && return 0
  done
  log "  $1 still busy after 120 s"
}

# rss_line TARGET PHASE: the target's resident memory (chat-stack: also per process).
rss_line() {
  local procs='{}' i
  if [ "$1" = chat-stack ]; then
    procs=$(for i in "${!stack_names[@]}"; do echo "${stack_names[$i]} $(rss_mib "$1" "${stack_pids[$i]}")"; done |
      jq -Rn '[inputs | split(" ") | {(.[0]): (.[1] | tonumber)}] | add')
  fi
  jq -cn --arg t "$1" --arg p "$2" --argjson m "$(rss_mib "$1")" --argjson procs "$procs" \
    '{kind: "rss", target: $t, phase: $p, mib: $m} + (if $procs == {} then {} else {procs: $procs} end)' >>"$results"
}

# hops_line AT: the stack's chat_message_hop_seconds histograms, summed over its processes.
hops_line() {
  local urls=() p
  for p in "${stack_ports[@]}"; do urls+=("http://127.0.0.1:$p/metrics"); done
  (cd "$NODE_DIR" && node hops.mjs "${urls[@]}") |
    jq -c --arg at "$1" --arg relay "${FACTS_RELAY:-kafka}" '{kind: "hops", target: "chat-stack", at: $at, relay: $relay, hops: .}' >>"$results"
}

# driver_cmd TARGET: sets the array cmd (the caller's, when it has a local one) to the load
# driver's command; the Rust one also samples the target's CPU over the measured window
# (window_cpu in its line).
driver_cmd() {
  if [ "$DRIVER" = rust ]; then
    local pids=${pid_of[$1]}
    cmd=("$RUST_DRIVER" --cpu-pids "${pids// /,}" --clk-tck "$HZ")
  else
    cmd=(node fanout.mjs)
  fi
}

# fanout TARGET RATE SECONDS: one run of the load driver; prints the groups used and its JSON
# line (or an error object).
fanout() {
  local target=$1 rate=$2 seconds=$3 groups=$NGROUPS out
  local need=$(( (rate + MEMBERS * PER_SOCKET_LIMIT - 1) / (MEMBERS * PER_SOCKET_LIMIT) ))
  if [ "$need" -gt "$groups" ]; then groups=$need; fi
  local cmd
  driver_cmd "$target"
  if out=$(cd "$NODE_DIR" && timeout $((seconds + 180)) "${cmd[@]}" --target "${kind_of[$target]}" \
      --base "${base_of[$target]}" --groups "$groups" --members "$MEMBERS" --rate "$rate" \
      --seconds "$seconds" 2>"$work/fanout.err" | tail -1) && [ -n "$out" ]; then
    echo "$groups $out"
  else
    echo "$groups $(jq -cn --arg e "$(tail -3 "$work/fanout.err")" '{error: $e}')"
  fi
}

# ---------------------------------------------------------------- profile mode
if [ "$mode" = profile ]; then
  command -v perf >/dev/null || die "perf is needed (apt-get install linux-perf)"
  rate=${BENCH_PROFILE_RATE:-2500}
  seconds=${BENCH_PROFILE_SECONDS:-15}
  start_server chat-server
  pid=${pid_of[chat-server]}
  log "profiling chat-server (pid $pid) at $rate sends/s for ${seconds} s"
  driver_cmd chat-server
  (cd "$NODE_DIR" && exec "${cmd[@]}" --target chat --base "${base_of[chat-server]}" --groups "$NGROUPS" \
    --members "$MEMBERS" --rate "$rate" --seconds "$seconds" --warmup 3 >"$work/profile-run.json" 2>&1) &
  driver=$!
  # Records once the driver's set-up (registrations, connections) is over and warm-up began.
  for _ in $(seq 300); do
    [ "$(ls "/proc/$pid/fd" | wc -l)" -ge $((NGROUPS * MEMBERS)) ] && break
    kill -0 "$driver" 2>/dev/null || die "the driver stopped: $(cat "$work/profile-run.json")"
    sleep 0.5
  done
  sleep 3
  perf record -F 499 -e cpu-clock --call-graph dwarf,16384 -o "$work/perf.data" -p "$pid" -- sleep $((seconds - 2)) >&2 2>/dev/null
  wait "$driver" || true
  cat "$work/profile-run.json"
  echo "== self time by symbol"
  perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio --percent-limit 0.7 -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | cut -c1-150 | head -40
  echo "== time including callees (chat, socket.io, SQLite, tokio frames)"
  perf report -i "$work/perf.data" --children --sort symbol --stdio --percent-limit 1.5 -g none 2>/dev/null | grep -v '^#' | grep -v '^$' \
    | grep -E 'chat_|socketioxide|engineioxide|sqlite3_step|sqlite3_prepare|execute_batch|pwrite|fsync|spawn_blocking|serde_json|futex|schedule' | cut -c1-150 | head -40
  cp "$work/perf.data" "$SCALABLE_CHAT_CACHE/bench-realtime.perf.data"
  log "perf data kept in $SCALABLE_CHAT_CACHE/bench-realtime.perf.data (perf report -i ...)"
  exit 0
fi

# ---------------------------------------------------------------- sweep
# Every target runs at once and the rates are interleaved (each rate on every target before the
# next rate), so whatever else the machine is doing weighs on all targets alike.
log "targets: $TARGETS; rates: $RATES sends/s, ${SECONDS_PER_RATE} s each; $NGROUPS groups x $MEMBERS members"
declare -A failing
for target in $TARGETS; do
  start_server "$target"
  settle "$target"
  failing[$target]=0
  log "$target: pid ${pid_of[$target]} at ${base_of[$target]}"
  rss_line "$target" start
  if [ "$target" = chat-stack ]; then hops_line start; fi
done
for rate in $RATES; do
  for target in $TARGETS; do
    if [ "${failing[$target]}" -ge "$([ "$target" = chat-stack ] && echo "$STACK_GIVE_UP" || echo "$GIVE_UP")" ]; then
      jq -cn --arg t "$target" --argjson r "$rate" '{kind: "skip", target: $t, rate: $r}' >>"$results"
      continue
    fi
    # chat-stack: the cores of the MongoDB and Kafka stand-ins and of the ingress too.
    others=()
    if [ "$target" = chat-stack ]; then others=("mongodb:$stack_mongodb_pid" "kafka:$stack_kafka_pid" "ingress:$ingress_pid"); fi
    declare -A o0=()
    for o in "${others[@]}"; do o0[$o]=$(cpu_ticks "$target" "${o#*:}"); done
    m0=$(machine_ticks); s0=$(cpu_ticks "$target"); t0=$(date +%s.%N)
    read -r groups out < <(fanout "$target" "$rate" "$SECONDS_PER_RATE")
    m1=$(machine_ticks); s1=$(cpu_ticks "$target"); t1=$(date +%s.%N)
    cores() { awk -v d="$1" -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { printf "%.2f", d / hz / (b - a) }'; }
    other_cores=$(for o in "${others[@]}"; do echo "${o%%:*} $(cores $(($(cpu_ticks "$target" "${o#*:}") - ${o0[$o]})))"; done |
      jq -Rn '[inputs | split(" ") | {(.[0]): (.[1] | tonumber)}] | add // {}')
    jq -cn --arg t "$target" --argjson r "$rate" --argjson g "$groups" --argjson rss "$(rss_mib "$target")" \
      --argjson sc "$(cores $((s1 - s0)))" --argjson mc "$(cores $((m1 - m0)))" --argjson x "$out" \
      --argjson oc "$other_cores" \
      '{kind: "run", target: $t, rate: $r, groups: $g, rss_mib: $rss, server_cores: $sc, machine_cores: $mc, result: $x}
        + (if $oc == {} then {} else {other_cores: $oc} end)' >>"$results"
    log "  $target $rate/s: $(jq -c '{sends_per_s, failed, lost_deliveries, ack_ms, delivery_ms, error}' <<<"$out" | cut -c1-200); server $(cores $((s1 - s0))) cores, machine $(cores $((m1 - m0)))"
    if jq -e '.error or .failed > 0 or .lost_deliveries > 0 or .delivery_ms.p99 == null or .delivery_ms.p99 >= 50' <<<"$out" >/dev/null; then
      failing[$target]=$((failing[$target] + 1))
    else
      failing[$target]=0
    fi
    settle "$target"
    if [ "$target" = chat-stack ]; then hops_line "$rate"; fi
  done
done
# Resident memory right after the sweep, and again once every target has been idle for
# RSS_IDLE seconds: what a server gives back when a busy spell is over.
for target in $TARGETS; do rss_line "$target" after; done
sleep "$RSS_IDLE"
for target in $TARGETS; do
  rss_line "$target" idle
  stop_server "$target"
done

# Idle sockets: each count on a fresh server, one target at a time; not for chat-stack (one
# chat process's memory per socket is chat-server's figure).
for target in $TARGETS; do
  [ "$target" != chat-stack ] || continue
  for n in $IDLE_SOCKETS; do
    start_server "$target"
    settle "$target"
    (cd "$NODE_DIR" && exec node idle.mjs --target "${kind_of[$target]}" --base "${base_of[$target]}" --sockets "$n" \
      --hold 600 >"$work/idle.json" 2>"$work/idle.err") &
    idle_driver=$!
    for _ in $(seq 600); do [ -s "$work/idle.json" ] && break; kill -0 "$idle_driver" 2>/dev/null || break; sleep 0.2; done
    sleep 1
    before=$(rss_mib "$target")
    for _ in $(seq 1200); do [ "$(wc -l <"$work/idle.json")" -ge 2 ] && break; kill -0 "$idle_driver" 2>/dev/null || break; sleep 0.5; done
    sleep 3
    after=$(rss_mib "$target")
    kill "$idle_driver" 2>/dev/null || true
    wait "$idle_driver" 2>/dev/null || true
    connected=$(tail -1 "$work/idle.json" | jq -r '.connected // 0' 2>/dev/null || echo 0)
    [ -n "$connected" ] || connected=0
    jq -cn --arg t "$target" --argjson n "$n" --argjson c "$connected" --argjson b "$before" --argjson a "$after" \
      '{kind: "idle", target: $t, sockets: $n, connected: $c, before_mib: $b, after_mib: $a,
        per_socket_kib: (if $c > 0 then ($a - $b) * 1024 / $c else 0 end)}' >>"$results"
    log "  $target idle $n sockets: $connected connected, RSS $before -> $after MiB"
    stop_server "$target"
  done
done

echo
echo "Real-time fan-out: $NGROUPS groups x $MEMBERS members, one websocket each, ${SECONDS_PER_RATE} s per rate" \
  "after a 3 s warm-up; $(nproc) cores shared by driver ($DRIVER) and server; $(date -u +%F)"
cp "$results" "$SCALABLE_CHAT_CACHE/bench-realtime.jsonl"
node "$NODE_DIR/table.mjs" "$SCALABLE_CHAT_CACHE/bench-realtime.jsonl"
rm -rf "$work"
