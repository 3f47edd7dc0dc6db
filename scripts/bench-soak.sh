#!/usr/bin/env bash
# The soak (issue 16.6): steady real-time load for a long time on `chat-server all` (embedded)
# and on the multi-process stack (gateway, auth, group, message and two chat replicas as
# separate processes on the local infrastructure), one line of figures a minute: sends
# acknowledged and refused, deliveries lost, acknowledgement and delivery p50/p99, and the
# resident memory and open descriptors of the server processes. They should stay flat.
# Release build. Figures, not pass/fail; not a CI test.
#
#   scripts/bench-soak.sh [all] [stack]     (both by default, one after the other)
#
# Settings (environment, with defaults):
#   SOAK_MINUTES   30      minutes of load per target
#   SOAK_RATE      200     sends/s on `all` (x SOAK_MEMBERS deliveries)
#   SOAK_STACK_RATE 50     sends/s on the stack: every message goes through the MongoDB
#                          stand-in (Python), which stores about 130 a second on this machine
#   SOAK_GROUPS    20      groups
#   SOAK_MEMBERS   10      members per group (one websocket each)
#   BENCH_NO_BUILD unset   set to 1 to use the chat-server already built
# Load traffic goes to loopback only. The stack target starts scripts/infra.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export SCALABLE_CHAT_CACHE=${SCALABLE_CHAT_CACHE:-$HOME/.cache/scalable-chat}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SCALABLE_CHAT_CACHE/target}
MINUTES=${SOAK_MINUTES:-30}
RATE=${SOAK_RATE:-200}
STACK_RATE=${SOAK_STACK_RATE:-50}
NGROUPS=${SOAK_GROUPS:-20}
MEMBERS=${SOAK_MEMBERS:-10}
NODE_DIR=$SCALABLE_CHAT_CACHE/bench-node
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(all stack)

log() { printf '[soak] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

. scripts/bench-node.sh
bench_node_install bench/node/soak.mjs
CHAT_SERVER=$CARGO_TARGET_DIR/release/chat-server
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  log "building chat-server (release) in $CARGO_TARGET_DIR"
  cargo build --release -p chat-server --bin chat-server >&2
fi
[ -x "$CHAT_SERVER" ] || die "no $CHAT_SERVER"

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-soak.XXXXXX")
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

# start ROLE NAME [VAR=VALUE...]: starts chat-server ROLE on a free port and waits until it is
# ready; sets port and pid.
start() {
  local role=$1 name=$2 address=$work/$2.address
  shift 2
  (exec env "$@" PORT=0 CHAT_ADDRESS_FILE="$address" BIND_ADDRESS=127.0.0.1 RUST_LOG=warn \
    API_MAX_REQUESTS_PER_ADDRESS=0 API_MAX_REQUESTS_PER_USER=0 \
    "$CHAT_SERVER" "$role") >"$work/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 600); do
    if [ -s "$address" ]; then
      port=$(grep -oE '[0-9]+$' "$address" | head -1)
      curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log" >&2; die "$name exited"; }
    sleep 0.1
  done
  die "$name not ready"
}

soak() {
  local label=$1 rate=$2 api=$3 sockets=$4 server_pids=$5
  log "$label: $MINUTES min at $rate sends/s, $NGROUPS groups of $MEMBERS"
  (cd "$NODE_DIR" && node soak.mjs --label "$label" --api "$api" --sockets "$sockets" \
    --groups "$NGROUPS" --members "$MEMBERS" --rate "$rate" --minutes "$MINUTES" \
    --pids "$server_pids") | tee -a "$work/results.jsonl"
}

for target in "${targets[@]}"; do
  case $target in
    all)
      start all all -u MONGODB_URI -u RABBITMQ_URI -u REDIS_URL -u KAFKA_BROKERS \
        CHAT_DATA_DIR="$work/data"
      soak all "$RATE" "http://127.0.0.1:$port" "http://127.0.0.1:$port" "$pid"
      stop_all
      ;;
    stack)
      eval "$(scripts/infra.sh up)"
      namespace=soak$(date +%s)
      server=$(sed -E 's|^(mongodb(\+srv)?://[^/?]+).*|\1|' <<<"$MONGODB_URI")
      shared=(CHAT_NAMESPACE="$namespace" MONGODB_URI="$server/$namespace")
      server_pids=()
      for role in auth group message gateway; do
        start "$role" "$role" "${shared[@]}"
        server_pids+=("$pid")
      done
      gateway=$port
      start chat chat-a "${shared[@]}"
      server_pids+=("$pid")
      chat_a=$port
      start chat chat-b "${shared[@]}"
      server_pids+=("$pid")
      chat_b=$port
      soak stack "$STACK_RATE" "http://127.0.0.1:$gateway" "http://127.0.0.1:$chat_a,http://127.0.0.1:$chat_b" \
        "$(IFS=,; echo "${server_pids[*]}")"
      stop_all
      ;;
    *) die "unknown target $target (all, stack)" ;;
  esac
done

echo
echo "| target | minute | sends acked | refused | deliveries lost | ack p99 ms | delivery p50 / p99 ms | RSS MiB | open fds |"
echo "|---|---|---|---|---|---|---|---|---|"
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  for (const r of lines) {
    if (r.total) continue;
    const minute = r.tail ? "tail" : r.minute;
    console.log(`| ${r.label} | ${minute} | ${r.sends_acked} | ${r.refused} | ${r.lost} | ${r.ack_ms.p99} | ${r.delivery_ms.p50} / ${r.delivery_ms.p99} | ${r.rss_mib} | ${r.fds} |`);
  }
  for (const r of lines.filter((r) => r.total)) {
    console.log(`\n${r.label}: ${r.acked} sends acknowledged, ${r.refused} refused, ${r.delivered} deliveries, ${r.lost} lost`);
  }' "$work/results.jsonl"
