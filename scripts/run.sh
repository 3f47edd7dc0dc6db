#!/usr/bin/env bash
# Runs the whole backend locally: starts the infrastructure it needs on loopback
# (scripts/infra.sh), then `chat-server all` on http://localhost:5000 (PORT to change it).
# Extra arguments go to cargo, for example `scripts/run.sh --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
export SCALABLE_CHAT_CACHE=${SCALABLE_CHAT_CACHE:-$HOME/.cache/scalable-chat}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SCALABLE_CHAT_CACHE/target}
infra_env=$(scripts/infra.sh up)
eval "$infra_env"
exec cargo run "$@" -p chat-server -- all
