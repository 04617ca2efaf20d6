# spec/e2e/nats_lib.bash: what the spec/e2e/nats_*.sh runs share, on top of
# spec/e2e/tcp_lib.bash: a nats-server of their own on a free loopback
# port, stopped (SIGKILL) when the script exits with the neuronbus
# processes. Sourced, not run.
source "$(dirname "${BASH_SOURCE[0]}")/tcp_lib.bash"
command -v nats-server >/dev/null 2>&1 || bail "nats-server is installed (make deps)"
nats_pid=""
nats_port=""

# nats_start [ARGS...]: starts nats-server on 127.0.0.1 (the same port as
# the last start, when there was one) with ARGS; waits until it accepts.
nats_start() {
  [ -n "$nats_port" ] || nats_port=$(free_port)
  nats-server -a 127.0.0.1 -p "$nats_port" "$@" >>"$work/nats-server.log" 2>&1 &
  nats_pid=$!
  nb_pid[nats-server]=$nats_pid
  local i
  for i in $(seq 100); do
    python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); s.connect(('127.0.0.1',$nats_port))" 2>/dev/null && return 0
    sleep 0.05
  done
  bail "nats-server listens on port $nats_port"
}

# nats_stop [SIGNAL]: stops the server (TERM by default) and waits.
nats_stop() {
  kill -"${1:-TERM}" "$nats_pid" 2>/dev/null
  wait "$nats_pid" 2>/dev/null
  unset "nb_pid[nats-server]"
  nats_pid=""
}

# nats_url: the server's url.
nats_url() { echo "nats://127.0.0.1:$nats_port"; }
