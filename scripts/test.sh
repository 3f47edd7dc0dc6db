#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs and starts the local infrastructure
# (scripts/infra.sh), installs the test tools, then runs every test with cargo-nextest.
# Builds go to a cache outside the clone ($CARGO_TARGET_DIR, default ~/.cache/scalable-chat/target)
# so repeated runs and CI reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
export SCALABLE_CHAT_CACHE=${SCALABLE_CHAT_CACHE:-$HOME/.cache/scalable-chat}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SCALABLE_CHAT_CACHE/target}

# On failure, show what the local servers logged: a crashed stand-in explains many failures.
show_infra_logs() {
  local status=$?
  [ "$status" -eq 0 ] && return
  for log in "$SCALABLE_CHAT_CACHE"/infra/*.log; do
    [ -s "$log" ] && { echo "---- last lines of $log"; tail -n 25 "$log"; }
  done >&2
  grep -h "exited with status" "$SCALABLE_CHAT_CACHE"/infra/*.log >&2 || true
  exit "$status"
}
trap show_infra_logs EXIT

# A C compiler and CMake first: building Tansu, cargo-nextest and the workspace all need them.
scripts/infra.sh toolchain
# Assign first, then eval: a failing `infra.sh up` must stop the run here.
infra_env=$(scripts/infra.sh up)
eval "$infra_env"
tools_env=$(scripts/infra.sh tools)
eval "$tools_env"
# The real Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler 1.25;
# no kubelet) for the operator suite `operator/tests/control_plane`. It is found through
# CHAT_CONTROL_PLANE_KUBECONFIG, never KUBECONFIG: the kind-only tests (cluster_e2e,
# cluster_upgrade) keep skipping unless a developer points KUBECONFIG at a real cluster.
control_plane=${CHAT_CONTROL_PLANE_SCRIPT:-../shared/k8s/control-plane.sh}
[ -x "$control_plane" ] || { echo "no control-plane script at $control_plane (set CHAT_CONTROL_PLANE_SCRIPT)" >&2; exit 1; }
# A control plane left half-running by an earlier session (the API server up, etcd gone) says
# "already running" to `up`; restart it whole.
if "$control_plane" status 2>/dev/null | grep -q stopped; then
  "$control_plane" down >/dev/null 2>&1 || true
fi
"$control_plane" up >/dev/null
export CHAT_CONTROL_PLANE_KUBECONFIG=${K8S_STATE:-$HOME/.cache/k8s-control-plane}/kubeconfig
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --version 0.9.143 --locked
# The stock socket.io-client for the frontend-compatibility test (Node 18+).
sudo_or() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v npm >/dev/null; then
  sudo_or env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo_or env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
# Debian's Chromium for the browser test (tests/js/browser.mjs drives it with playwright-core,
# which never downloads a browser of its own).
if [ ! -x /usr/bin/chromium ]; then
  sudo_or env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo_or env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
[ -d tests/js/node_modules/socket.io-client ] && [ -d tests/js/node_modules/playwright-core ] \
  && [ -d tests/js/node_modules/@asyncapi/specs ] || npm ci --prefix tests/js --no-audit --no-fund
# The reference web client's build tools (esbuild, TypeScript): a test rebuilds its bundle and
# compares it with the committed one.
[ -d examples/web/node_modules/esbuild ] || npm ci --prefix examples/web --no-audit --no-fund
# Where tests leave what CI keeps (the web client's screenshots).
export CHAT_ARTIFACTS_DIR=${CHAT_ARTIFACTS_DIR:-$SCALABLE_CHAT_CACHE/artifacts}

# The checks every commit must pass (README, Contributing), first: they are the cheapest.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The black-box tests start the chat-server binary as processes: build it first.
cargo build -p chat-server
# Tests that restart a shared server run alone, after the rest (see .config/nextest.toml).
# Among them, the fault-injection suite in its reduced form (tests/tests/chaos.rs; in full:
# scripts/chaos.sh).
shared='test(/broker_restart/) | binary(chaos)'
cargo nextest run --workspace --profile ci -E "not ($shared)" "$@"
cargo nextest run --workspace --profile ci -E "$shared" --no-tests=pass "$@"
# The black-box API and socket tests again, against `chat-server all` on its embedded adapters
# (no MongoDB, RabbitMQ, Kafka or Redis); tests about separate processes say they do not apply.
CHAT_TEST_EMBEDDED=1 cargo nextest run -p chat-tests --profile ci -E 'not binary(embedded)' "$@"
