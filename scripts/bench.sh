#!/usr/bin/env bash
# Benchmarks: builds chat-server and the bench driver in release mode, starts the local
# infrastructure, and prints figures (RPC round trip, login, /auth/me, real-time delivery,
# 50 MB upload and download, embedded mode start-up and memory). Nothing is asserted; compare
# the figures with the README's.
# Arguments name sections to run alone: rpc login realtime fanout attachments embedded reads soak.
#   reads     GET /groups for a user in 100 groups and a 50-message history page, on the embedded
#             store and on MongoDB (p50/p99 over 500 sequential requests)
#   soak      30 minutes of steady load on `chat-server all` and on the multi-process stack, a
#             line of figures a minute (scripts/bench-soak.sh; not in the default set)
#   fanout    the real-time fan-out table against the Node Socket.IO reference
#             (scripts/bench-realtime.sh; needs Node.js, no infrastructure)
#   realtime  fanout with the multi-process stack as a fourth target (chat-stack: its row at
#             25-200 sends/s and its time per hop), then a message between two chat replicas
#             through Kafka (infrastructure)
# `--quick` (with fanout or realtime) runs the short sweep; see scripts/bench-realtime.sh for its
# settings.
set -euo pipefail
cd "$(dirname "$0")/.."
export SCALABLE_CHAT_CACHE=${SCALABLE_CHAT_CACHE:-$HOME/.cache/scalable-chat}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SCALABLE_CHAT_CACHE/target}

sections=()
quick=()
for a in "$@"; do
  case $a in
    --quick) quick=(--quick) ;;
    *) sections+=("$a") ;;
  esac
done
[ ${#sections[@]} -gt 0 ] || sections=(rpc login realtime attachments embedded reads)
fanout=
stack=
soak=
rust=()
for s in "${sections[@]}"; do
  case $s in
    fanout) fanout=1 ;;
    soak) soak=1 ;;
    realtime) fanout=1; stack=1; rust+=("$s") ;;
    *) rust+=("$s") ;;
  esac
done

if [ -n "$fanout" ]; then
  BENCH_TARGETS=${BENCH_TARGETS:-node-memory node-sqlite chat-server${stack:+ chat-stack}} \
    scripts/bench-realtime.sh "${quick[@]}"
fi
if [ -n "$soak" ]; then
  scripts/bench-soak.sh
fi
if [ ${#rust[@]} -gt 0 ]; then
  infra_env=$(scripts/infra.sh up)
  eval "$infra_env"
  cargo build --release -p chat-server -p chat-tests --bin chat-server --bin bench
  "$CARGO_TARGET_DIR/release/bench" "${rust[@]}"
fi
