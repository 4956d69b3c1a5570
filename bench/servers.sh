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
    signalpost-redis) server=("$2/signalpost" --listen 127.0.0.1:0 "${signalpost_flags[@]}" --redis-url "${redis_url:?start_redis first}") ;;
    floor) server=("$2/floor" --listen 127.0.0.1:0) ;;
    *) return 1 ;;
  esac
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
# the command prefix given (pinning, priority). Sets redis_pid and
# redis_url; fails if it is not ready within 10 s.
start_redis() { # log file, command prefix…
  local log=$1 port
  shift
  command -v redis-server >/dev/null || { echo "bench: signalpost-redis needs redis-server (apt-get install redis-server)" >&2; return 1; }
  for port in $(seq 6400 6499); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
  "$@" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$log" 2>&1 &
  redis_pid=$!
  redis_url=redis://127.0.0.1:$port
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
  [ -n "${redis_pid:-}" ] || return 0
  kill -TERM "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=""
}
