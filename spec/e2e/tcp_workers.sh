#!/usr/bin/env bash
# The TCP exchange (tcp_exchange.sh: two processes, every spike and payload
# byte checked both ways, the link statistics accounting for each) with
# both runtimes on two worker threads, where the generator and the remote
# neuron's proxy sit on different workers. Ends with "N passed, M failed".
export NB_RUN_ARGS="--workers 2"
export NB_TCP_SPIKES=${NB_TCP_SPIKES:-200000}
exec bash "$(dirname "$0")/tcp_exchange.sh"
