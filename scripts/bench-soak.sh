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
. scripts/bench-stack.sh
stop_all() {
  stop_pids "${role_pids[@]}"
  role_pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

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
      role_start all all -u MONGODB_URI -u RABBITMQ_URI -u REDIS_URL -u KAFKA_BROKERS \
        CHAT_DATA_DIR="$work/data"
      soak all "$RATE" "http://127.0.0.1:$port" "http://127.0.0.1:$port" "$pid"
      stop_all
      ;;
    stack)
      stack_start "soak$(date +%s)"
      soak stack "$STACK_RATE" "http://127.0.0.1:$stack_gateway" \
        "http://127.0.0.1:${stack_chats[0]},http://127.0.0.1:${stack_chats[1]}" \
        "$(IFS=,; echo "${stack_pids[*]}")"
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
