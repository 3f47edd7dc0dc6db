# Sourced by the benchmark scripts (bench-soak.sh, bench-realtime.sh): starts chat-server roles
# as processes on loopback, the multi-process stack on the local infrastructure, and an nginx
# ingress in front of it. Needs CHAT_SERVER, work (a scratch directory), log and die.
#
#   role_start ROLE NAME [-u VAR | VAR=VALUE...]   chat-server ROLE on a port of its choosing,
#       logging to $work/NAME.log; waits until /readyz answers; sets port and pid and adds the
#       pid to role_pids
#   stop_pids PID...          SIGTERM, then SIGKILL after 5 s
#   stack_start NAMESPACE [VAR=VALUE...]   scripts/infra.sh up, then auth, group, message,
#       gateway and two chat replicas (chat-a, chat-b) in NAMESPACE (topics, queues, keys and
#       a MongoDB database of its own); sets stack_names, stack_ports, stack_pids (same order),
#       stack_gateway and stack_chats (ports), stack_mongodb_pid and stack_kafka_pid (the
#       stand-ins' processes, when this machine runs them)
#   ingress_start GATEWAY_PORT CHAT_PORT...   nginx on a free port routing /socket.io/
#       (WebSocket upgrade) to the chat replicas and everything else to the gateway, as the
#       operator's Ingresses do; sets ingress_port and ingress_pid

role_pids=()

role_start() {
  local role=$1 name=$2 address=$work/$2.address
  shift 2
  (exec env "$@" PORT=0 CHAT_ADDRESS_FILE="$address" BIND_ADDRESS=127.0.0.1 RUST_LOG=warn \
    API_MAX_REQUESTS_PER_ADDRESS=0 API_MAX_REQUESTS_PER_USER=0 \
    "$CHAT_SERVER" "$role") >"$work/$name.log" 2>&1 &
  pid=$!
  role_pids+=("$pid")
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

# The process listening on a loopback TCP port (empty when none is seen).
listener_pid() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -oE 'pid=[0-9]+' | head -1 | cut -d= -f2 || true; }

stop_pids() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}

stack_start() {
  local namespace=$1 infra_env server role name
  shift
  infra_env=$(scripts/infra.sh up) || die "scripts/infra.sh up failed"
  eval "$infra_env"
  server=$(sed -E 's|^(mongodb(\+srv)?://[^/?]+).*|\1|' <<<"$MONGODB_URI")
  stack_mongodb_pid=$(listener_pid "${server##*:}")
  stack_kafka_pid=$(listener_pid "${KAFKA_BROKERS##*:}")
  : "${stack_mongodb_pid:=none}" "${stack_kafka_pid:=none}"
  local shared=(CHAT_NAMESPACE="$namespace" MONGODB_URI="$server/$namespace" "$@")
  stack_names=() stack_ports=() stack_pids=() stack_chats=()
  for name in auth group message gateway chat-a chat-b; do
    role=${name%-?}
    role_start "$role" "$name" "${shared[@]}"
    stack_names+=("$name") stack_ports+=("$port") stack_pids+=("$pid")
    case $name in
      gateway) stack_gateway=$port ;;
      chat-*) stack_chats+=("$port") ;;
    esac
  done
}

ingress_start() {
  local gateway=$1 dir=$work/ingress chat servers=""
  shift
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] \
    || die "nginx is needed for the stack's ingress: apt-get install -y nginx"
  for chat in "$@"; do servers+="    server 127.0.0.1:$chat;"$'\n'; done
  mkdir -p "$dir"
  ingress_port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  # One worker: the machine has two cores for everything. Round robin over the replicas is
  # enough for WebSocket-only clients; polling ones need the cookie affinity the operator's
  # Ingress asks ingress-nginx for.
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
$([ "$(id -u)" -eq 0 ] && echo "user root;")
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 30000; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  client_max_body_size 6m;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  upstream gateway { server 127.0.0.1:$gateway; keepalive 32; }
  upstream chat {
$servers  }
  server {
    listen 127.0.0.1:$ingress_port;
    proxy_http_version 1.1;
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_buffering off;
    location /socket.io/ {
      proxy_pass http://chat;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
    }
    location / {
      proxy_pass http://gateway;
      proxy_set_header Connection "";
      proxy_read_timeout 300s;
    }
  }
}
EOF
  PATH=$PATH:/usr/sbin nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
    >"$work/ingress.log" 2>&1 &
  ingress_pid=$!
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$ingress_port/readyz" 2>/dev/null && return 0
    kill -0 "$ingress_pid" 2>/dev/null || { cat "$work/ingress.log" "$dir/error.log" >&2; die "nginx exited"; }
    sleep 0.1
  done
  die "the ingress does not answer on $ingress_port"
}
