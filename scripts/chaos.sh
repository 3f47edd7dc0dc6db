#!/usr/bin/env bash
# The fault-injection suite in full (issue 16.1), with a table of what each fault cost.
#
#   scripts/chaos.sh              one stream of 10,000 messages through which every fault
#                                 strikes in turn, each healed before the next
#   scripts/chaos.sh each         one test per fault, each on a stack of its own (1,000 each)
#   scripts/chaos.sh FILTER       the per-fault tests matching it, e.g. kill_rabbitmq
#
# Every role runs as a process of its own (two chat replicas) on the local infrastructure
# (scripts/infra.sh), 20 senders stream CHAOS_MESSAGES messages into 50 groups (CHAOS_SENDERS,
# CHAOS_GROUPS; CHAOS_RATE sends/s in all, default 50) with receivers on both replicas, and the
# faults strike during the stream: SIGKILL of a role, of a chat replica, of Redis, RabbitMQ or
# the MongoDB stand-in (then started again), or SIGSTOP of MongoDB or Kafka for longer than the
# clients' timeout; and Redis killed or hung with the facts relayed over it (FACTS_RELAY=redis,
# `scripts/chaos.sh on_the_relay`). The run asserts that every acknowledged message is stored once with gap-free
# seq, every receiver ends with every message of its groups, every send is answered, and the
# system recovers by itself (tests/tests/chaos.rs). CI runs the per-fault tests with 400
# messages each.
#
# The faults restart shared servers: do not run other tests against them meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
export SCALABLE_CHAT_CACHE=${SCALABLE_CHAT_CACHE:-$HOME/.cache/scalable-chat}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SCALABLE_CHAT_CACHE/target}
case ${1:-} in
  "") filter=(--run-ignored only -E 'test(=chaos_every_fault_in_turn)')
      export CHAOS_MESSAGES=${CHAOS_MESSAGES:-10000} ;;
  each) filter=()
      export CHAOS_MESSAGES=${CHAOS_MESSAGES:-1000} ;;
  *) filter=(-E "test(/$1/)")
      export CHAOS_MESSAGES=${CHAOS_MESSAGES:-1000} ;;
esac

eval "$(scripts/infra.sh up)"
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --version 0.9.143 --locked
cargo build -q -p chat-server
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
cargo nextest run -p chat-tests --test chaos --test-threads 1 --no-capture --no-fail-fast \
  "${filter[@]}" 2>&1 | tee "$out" | grep -E '^chaos:|FAIL|PASS' || status=$?

echo
echo "| fault | messages | outage | refused (during the fault) | unanswered | longest answer | recovered after healing | replayed |"
echo "|---|---|---|---|---|---|---|---|"
grep '^chaos:' "$out" | sed -E 's/^chaos: //; s/ \| /|/g; s/ messages\|/|/; s/\|outage /|/;
  s/ refused \(([0-9]+) during the fault\)/ (\1)/; s/ unanswered\|/|/; s/\|longest answer /|/;
  s/\|recovered ([0-9]+ ms) after healing/|\1/; s/ replayed$//' | awk -F'|' '{
  printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
if grep -q ' FAIL ' "$out"; then
  echo
  echo "failed:"
  grep -A2 'panicked at' "$out" | grep -vE '^\s+[0-9]+:|^\s+at ' || true
  exit 1
fi
exit $status
