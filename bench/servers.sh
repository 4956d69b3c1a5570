# Sourced by bench/run, bench/profile and bench/perf: how they build the
# Rust servers and start them, so that all three measure the same server.

# signalpost's abuse limits, lifted for the benchmark; every other flag
# stays at its default, inbox bounds included.
signalpost_flags=(--join-rate 1000000000 --signal-rate 1000000 --max-members 1000000 --max-streams 1000000)

# Two builds, not one: cargo gives the packages of one build the union of
# their features, and the floor's axum (all default features) would then be
# the server's too.
build_servers() { # cargo flags…
  cargo build "$@" -p signalpost
  cargo build "$@" -p signalpost-bench
}

# Sets the array `server` to the command line of a Rust peer built in DIR.
# signalpost-redis needs `redis_url` set (start_redis).
rust_server() { # peer, dir
  case "$1" in
    signalpost|signalpost-poll) server=("$2/signalpost" --listen 127.0.0.1:0 "${signalpost_flags[@]}") ;;
    signalpost-redis|signalpost-redis-x2|signalpost-redis-x3) server=("$2/signalpost" --listen 127.0.0.1:0 "${signalpost_flags[@]}" --redis-url "${redis_url:?start_redis first}") ;;
    signalpost-cluster-x3) server=("$2/signalpost" --listen 127.0.0.1:0 "${signalpost_flags[@]}" --redis-url "${redis_url:?start_redis_cluster first}" --redis-cluster) ;;
    signalpost-tls|signalpost-h2) server=("$2/signalpost" --listen 127.0.0.1:0 "${signalpost_flags[@]}" --tls-cert "${tls_cert:?make_certificate first}" --tls-key "$tls_key") ;;
    floor) server=("$2/floor" --listen 127.0.0.1:0) ;;
    floor-tls|floor-h2) server=("$2/floor" --listen 127.0.0.1:0 --tls-cert "${tls_cert:?make_certificate first}" --tls-key "$tls_key") ;;
    *) return 1 ;;
  esac
}

# A self-signed certificate for 127.0.0.1, made for this run, for the
# peers reached over HTTPS: the server presents it and the generator trusts
# it (`--ca`). Sets tls_cert and tls_key.
make_certificate() { # folder
  tls_cert=$1/cert.pem
  tls_key=$1/key.pem
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
    -keyout "$tls_key" -out "$tls_cert" 2>/dev/null
}

# Prints the address a server logged once it is listening. Fails when the
# process ends first, or after TRIES tenths of a second.
listening_address() { # log, pid, tries
  local addr
  for _ in $(seq "$3"); do
    addr=$(grep -ao 'listening on [0-9.]*:[0-9]*' "$1" | head -n 1 | cut -d' ' -f3 || true)
    if [ -n "$addr" ]; then
      echo "$addr"
      return 0
    fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Starts a redis-server for signalpost-redis on a free loopback port, with
# no persistence (the benchmark measures the relay, not the disk), under
# the command prefix given (pinning, priority). Sets redis_pid (and
# redis_pids, of every redis-server started) and redis_url; fails if it is
# not ready within 10 s.
start_redis() { # log file, command prefix…
  redis_pids=()
  start_one_redis "$@" || return 1
  redis_url=redis://127.0.0.1:$redis_port
}

# Starts a Redis Cluster of three primaries, no replicas, each on a free
# loopback port with no persistence, and waits until every node says it
# is ok. Sets redis_pids and redis_url (the three nodes' URLs).
start_redis_cluster() { # log file, command prefix…
  local log=$1 addrs=() port
  shift
  redis_pids=()
  local i
  for i in 1 2 3; do
    # A configuration left by an earlier run would make it a member already.
    rm -f "$log.$i.nodes.conf"
    start_one_redis "$log.$i" "$@" --cluster-enabled yes --cluster-config-file "$log.$i.nodes.conf" || return 1
    addrs+=("127.0.0.1:$redis_port")
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$log.create" 2>&1 || {
    echo "bench: redis-cli --cluster create failed:" >&2
    cat "$log.create" >&2
    stop_redis
    return 1
  }
  for port in "${addrs[@]##*:}"; do
    for i in $(seq 100); do
      redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
      sleep 0.1
    done
  done
  redis_url=$(printf 'redis://%s,' "${addrs[@]}")
  redis_url=${redis_url%,}
}

# The started redis-servers' addresses, comma-separated, from redis_url
# (`redis://a,redis://b`).
redis_addrs() {
  local url=${redis_url//redis:\/\//}
  echo "$url"
}

# One redis-server (more arguments after `--`… are its own), on the next
# free port from 6400. Sets redis_pid and redis_port, adds to redis_pids.
start_one_redis() { # log file, command prefix… [redis-server flags…]
  local log=$1 port prefix=() flags=()
  shift
  command -v redis-server >/dev/null || { echo "bench: signalpost-redis needs redis-server (apt-get install redis-server)" >&2; return 1; }
  while [ $# -gt 0 ] && [[ "$1" != --* ]]; do prefix+=("$1"); shift; done
  flags=("$@")
  for port in $(seq 6400 6499); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { [[ " ${used_redis_ports:-} " == *" $port "* ]] || break; }
  done
  used_redis_ports="${used_redis_ports:-} $port"
  "${prefix[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no "${flags[@]}" >"$log" 2>&1 &
  redis_pid=$!
  redis_port=$port
  redis_pids+=("$redis_pid")
  local i
  for i in $(seq 100); do
    grep -q 'Ready to accept connections' "$log" && return 0
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: redis-server did not start; its log:" >&2
  cat "$log" >&2
  stop_redis
  return 1
}

stop_redis() {
  local pid
  for pid in ${redis_pids[@]+"${redis_pids[@]}"} ${redis_pid:-}; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  redis_pid=""
  redis_pids=()
  used_redis_ports=""
}
