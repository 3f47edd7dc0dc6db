# Sourced by the benchmark scripts: installs the pinned Node dependencies of the real-time
# yardstick (bench/node/package-lock.json) under $NODE_DIR, outside the clone, and copies the
# given scripts there (ES modules resolve packages from their own directory).
#   bench_node_install FILE...
bench_node_install() {
  command -v node >/dev/null || die "node is needed (Node.js 20 or newer)"
  mkdir -p "$NODE_DIR"
  if ! cmp -s bench/node/package-lock.json "$NODE_DIR/package-lock.json" || [ ! -d "$NODE_DIR/node_modules" ]; then
    log "installing the pinned Node dependencies into $NODE_DIR"
    cp bench/node/package.json bench/node/package-lock.json "$NODE_DIR/"
    # better-sqlite3 compiles from source when no prebuilt binary can be fetched; Debian's nodejs
    # ships the headers under /usr/include/node.
    if [ -d /usr/include/node ]; then export npm_config_nodedir=${npm_config_nodedir:-/usr}; fi
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund >&2)
  fi
  cp "$@" "$NODE_DIR/"
}
