#!/usr/bin/env bash
# The fault-injection suite in full (issue 16.1), with a table of what each fault cost.
#
#   scripts/chaos.sh [filter]      e.g. scripts/chaos.sh kill_rabbitmq
#
# Every role runs as a process of its own (two chat replicas) on the local infrastructure
# (scripts/infra.sh), 20 senders stream CHAOS_MESSAGES messages (default 10000) into 50 groups
# with receivers on both replicas, and each test injects one fault a third of the way through:
# SIGKILL of a role, of a chat replica, of Redis, RabbitMQ or the MongoDB stand-in (then started
# again), or SIGSTOP of MongoDB or Kafka for longer than the clients' timeout. Each test asserts
# that every acknowledged message is stored once with gap-free seq, every receiver ends with
# every message of its groups, every send is answered, and the system recovers by
# itself (tests/tests/chaos.rs). CI runs the same tests with 400 messages each.
#
# The faults restart shared servers: do not run other tests against them meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
export SCALABLE_CHAT_CACHE=${SCALABLE_CHAT_CACHE:-$HOME/.cache/scalable-chat}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SCALABLE_CHAT_CACHE/target}
export CHAOS_MESSAGES=${CHAOS_MESSAGES:-10000}

eval "$(scripts/infra.sh up)"
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --version 0.9.143 --locked
cargo build -q -p chat-server
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
cargo nextest run -p chat-tests --test chaos --test-threads 1 --no-capture --no-fail-fast \
  ${1:+-E "test(/$1/)"} 2>&1 | tee "$out" | grep -E '^chaos:|FAIL|PASS' || status=$?

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
