#!/usr/bin/env bash
# Local infrastructure for development and tests: Redis, RabbitMQ, a MongoDB-compatible
# server (SecantusDB) and a Kafka-compatible broker (Tansu), each on loopback only.
#
#   scripts/infra.sh up [service...]     install what is missing, start what is not running,
#                                        wait until each answers, print the connection variables
#   scripts/infra.sh down                stop only what this script started
#   scripts/infra.sh status              say what answers and who started it
#   scripts/infra.sh env                 print the connection variables (for `eval`)
#   scripts/infra.sh tools               install the test tools into the cache: kubernetes-validate,
#                                        helm-python-sdk and schemathesis (Python venv)
#   scripts/infra.sh toolchain           install a C compiler, make and CMake if missing (SQLite
#                                        and librdkafka are compiled from source with the first
#                                        two; CMake is for the stand-ins built from source)
#
# Services: redis rabbitmq mongodb kafka (default: all four).
# Progress goes to stderr and the variables to stdout, so `eval "$(scripts/infra.sh up)"` works.
#
# SecantusDB and Tansu are stand-ins for tests and local development only; production runs the
# official MongoDB and Apache Kafka images (see README).
#
# Settings (environment, with defaults):
#   SCALABLE_CHAT_CACHE   $HOME/.cache/scalable-chat   where installs, data and pid files live
#   REDIS_PORT 6379  RABBITMQ_PORT 5672  MONGODB_PORT 27017  KAFKA_PORT 9092
#   KAFKA_STORAGE         memory://tansu/              Tansu storage engine (sqlite://FILE persists)
set -euo pipefail

CACHE=${SCALABLE_CHAT_CACHE:-$HOME/.cache/scalable-chat}
STATE=$CACHE/infra
REDIS_PORT=${REDIS_PORT:-6379}
RABBITMQ_PORT=${RABBITMQ_PORT:-5672}
MONGODB_PORT=${MONGODB_PORT:-27017}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_STORAGE=${KAFKA_STORAGE:-memory://tansu/}
SECANTUS_VERSION=0.7.0b3
TANSU_VERSION=0.6.0
# The chart tests' Python tools (installed by `infra.sh tools`), pinned like the servers.
KUBERNETES_VALIDATE_VERSION=1.37.0
HELM_PYTHON_SDK_VERSION=0.2.2
# The OpenAPI contract test's fuzzer (tests/tests/contract.rs).
SCHEMATHESIS_VERSION=4.32.5
ALL_SERVICES=(redis rabbitmq mongodb kafka)

log() { printf '[infra] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
mkdir -p "$STATE"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root (or sudo) to run: $*"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_until <seconds> <what> <command...>
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not answer in time (logs in $STATE)"
    sleep 0.3
  done
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

toolchain() {
  command -v cc >/dev/null && command -v cmake >/dev/null && return 0
  apt_install build-essential cmake
}

# supervise <name> <command...>: run a stand-in server in the background, in a process group of
# its own, and start it again if it dies (the exit status goes to its log), so that one crash of
# a development stand-in costs a test run seconds rather than every later test.
supervise() {
  local name=$1; shift
  : >"$STATE/$name.log"
  setsid bash -c '
    log=$1; shift
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # a thread and a socket per client connection
    while :; do
      "$@" >>"$log" 2>&1
      status=$?
      printf "[infra] %s: exited with status %s; starting it again\n" "$(date -u +%FT%TZ)" "$status" >>"$log"
      sleep 1
    done' supervise "$STATE/$name.log" "$@" </dev/null >/dev/null 2>&1 &
  echo $! >"$STATE/$name.pid"
  # Marked at once: if the server never answers, `down` must still stop the restart loop.
  mark_started "$name" "$!"
}

mark_started() { echo "$2" >"$STATE/$1.started"; }
started_by_us() { [ -f "$STATE/$1.started" ]; }

# ---------------------------------------------------------------- redis
redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
redis_up() {
  if redis_ping; then log "redis: reusing the server on 127.0.0.1:$REDIS_PORT"; return; fi
  apt_install redis-server
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
    --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" >&2
  wait_until 20 redis redis_ping
  mark_started redis "$(cat "$STATE/redis.pid")"
  log "redis: started on 127.0.0.1:$REDIS_PORT"
}
redis_down() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- rabbitmq
rabbit_env() {
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$RABBITMQ_PORT ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE=/var/lib/rabbitmq/scalable-chat
}
rabbit_ping() { rabbit_env; port_open "$RABBITMQ_PORT" && rabbitmqctl -q status >/dev/null 2>&1; }
rabbitmq_up() {
  if port_open "$RABBITMQ_PORT"; then log "rabbitmq: reusing the broker on 127.0.0.1:$RABBITMQ_PORT"; return; fi
  apt_install rabbitmq-server
  rabbit_env
  # The Debian package may have started a node without our loopback settings; leave it be
  # only if it already listens (handled above), otherwise start our own.
  # Our node starts from an empty data directory every time. It only ever holds RPC queues and
  # their in-flight requests, which mean nothing once the processes that used them are gone,
  # while recovering thousands of queues left by earlier test runs made the boot take longer
  # than five minutes on a 2-core machine (a queue's x-expires clock stops while the broker
  # is down, so they never expire on their own).
  rm -rf "$RABBITMQ_MNESIA_BASE"
  install -d -o rabbitmq -g rabbitmq "$RABBITMQ_MNESIA_BASE"
  rabbitmq-server -detached >"$STATE/rabbitmq.log" 2>&1
  # `-detached` returns before the node registers with epmd, and `await_startup` gives up at
  # once on a node it cannot reach: first wait until the node answers at all, then until the
  # broker inside it has booted.
  wait_until 60 rabbitmq rabbitmqctl -q ping
  rabbitmqctl -q --timeout 300 await_startup >&2 || die "rabbitmq did not start (see /var/log/rabbitmq)"
  wait_until 30 rabbitmq port_open "$RABBITMQ_PORT"
  mark_started rabbitmq node
  log "rabbitmq: started on 127.0.0.1:$RABBITMQ_PORT"
}
rabbitmq_down() { rabbit_env; rabbitmqctl -q stop >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- mongodb (SecantusDB)
VENV=$CACHE/venv
mongo_ping() {
  port_open "$MONGODB_PORT" && "$VENV/bin/python" - "$MONGODB_PORT" <<'PY'
import sys, pymongo
pymongo.MongoClient(port=int(sys.argv[1]), serverSelectionTimeoutMS=1000, directConnection=True).admin.command("ping")
PY
}
mongodb_up() {
  if port_open "$MONGODB_PORT"; then log "mongodb: reusing the server on 127.0.0.1:$MONGODB_PORT"; return; fi
  if ! "$VENV/bin/python" -c 'import secantus' 2>/dev/null; then
    log "installing SecantusDB $SECANTUS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "secantusdb==$SECANTUS_VERSION" >&2
  fi
  mkdir -p "$STATE/mongodb-data"
  supervise mongodb "$VENV/bin/python" -m secantus --host 127.0.0.1 --port "$MONGODB_PORT" \
    --storage-path "$STATE/mongodb-data" --log-level WARNING
  wait_until 60 mongodb mongo_ping
  log "mongodb: SecantusDB started on 127.0.0.1:$MONGODB_PORT"
}

# ---------------------------------------------------------------- kafka (Tansu)
tansu_bin() {
  if [ -x "$CACHE/tansu/bin/tansu" ]; then echo "$CACHE/tansu/bin/tansu"; return; fi
  command -v tansu 2>/dev/null || true
}
kafka_up() {
  if port_open "$KAFKA_PORT"; then log "kafka: reusing the broker on 127.0.0.1:$KAFKA_PORT"; return; fi
  local bin; bin=$(tansu_bin)
  if [ -z "$bin" ]; then
    toolchain
    apt_install libcurl4-openssl-dev
    log "building Tansu $TANSU_VERSION into $CACHE/tansu (once; 15-20 minutes on 2 cores)"
    CARGO_TARGET_DIR=$CACHE/tansu-build cargo install tansu --version "$TANSU_VERSION" --locked \
      --features dynostore,libsql --root "$CACHE/tansu" >&2
    rm -rf "$CACHE/tansu-build"
    bin=$CACHE/tansu/bin/tansu
  fi
  supervise kafka "$bin" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine "$KAFKA_STORAGE"
  wait_until 60 kafka port_open "$KAFKA_PORT"
  log "kafka: Tansu started on 127.0.0.1:$KAFKA_PORT"
}

# stop_pid <name>: stop a supervised server and its supervisor (one process group).
stop_pid() {
  local pid; pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL -- "-$pid" 2>/dev/null || true
}
mongodb_down() { stop_pid mongodb; }
kafka_down() { stop_pid kafka; }

print_env() {
  cat <<EOF
export MONGODB_URI=mongodb://127.0.0.1:$MONGODB_PORT/scalable_chat
export RABBITMQ_URI=amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/%2f
export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
EOF
}

services_from_args() {
  if [ $# -eq 0 ]; then echo "${ALL_SERVICES[@]}"; return; fi
  for s in "$@"; do
    case " ${ALL_SERVICES[*]} " in *" $s "*) ;; *) die "unknown service '$s' (one of: ${ALL_SERVICES[*]})";; esac
  done
  echo "$@"
}

cmd=${1:-}; shift || true
case "$cmd" in
  up)
    for s in $(services_from_args "$@"); do "${s}_up"; done
    print_env ;;
  down)
    for s in "${ALL_SERVICES[@]}"; do
      if started_by_us "$s"; then "${s}_down"; rm -f "$STATE/$s.started" "$STATE/$s.pid"; log "$s: stopped"
      else log "$s: not started by this script, left alone"; fi
    done ;;
  status)
    for s in "${ALL_SERVICES[@]}"; do
      case $s in redis) p=$REDIS_PORT;; rabbitmq) p=$RABBITMQ_PORT;; mongodb) p=$MONGODB_PORT;; kafka) p=$KAFKA_PORT;; esac
      if port_open "$p"; then state=up; else state=down; fi
      if started_by_us "$s"; then who="started by infra.sh"; else who="not started by infra.sh"; fi
      printf '%-9s %-5s 127.0.0.1:%-6s %s\n' "$s" "$state" "$p" "$who"
    done ;;
  env) print_env ;;
  toolchain) toolchain ;;
  tools)
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" - "$SCHEMATHESIS_VERSION" <<'PY' 2>/dev/null || { log "installing kubernetes-validate, helm-python-sdk and schemathesis into $VENV"; "$VENV/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "helm-python-sdk==$HELM_PYTHON_SDK_VERSION" "schemathesis==$SCHEMATHESIS_VERSION" >&2; }
import sys, importlib.metadata, kubernetes_validate, helm_python
assert importlib.metadata.version("schemathesis") == sys.argv[1]
PY
    echo "export CHAT_TOOLS_VENV=$VENV" ;;
  *) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
