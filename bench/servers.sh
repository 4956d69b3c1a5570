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
rust_server() { # peer, dir
  case "$1" in
    signalpost|signalpost-poll) server=("$2/signalpost" --listen 127.0.0.1:0 "${signalpost_flags[@]}") ;;
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
