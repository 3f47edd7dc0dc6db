#!/usr/bin/env bash
# Benchmarks: builds chat-server and the bench driver in release mode, starts the local
# infrastructure, and prints figures (RPC round trip, login, /auth/me, real-time delivery,
# 50 MB upload and download, embedded mode start-up and memory). Nothing is asserted; compare
# the figures with the README's.
# Arguments name sections to run alone: rpc login realtime attachments embedded.
set -euo pipefail
cd "$(dirname "$0")/.."
export SCALABLE_CHAT_CACHE=${SCALABLE_CHAT_CACHE:-$HOME/.cache/scalable-chat}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SCALABLE_CHAT_CACHE/target}
infra_env=$(scripts/infra.sh up)
eval "$infra_env"
cargo build --release -p chat-server -p chat-tests --bin chat-server --bin bench
"$CARGO_TARGET_DIR/release/bench" "$@"
