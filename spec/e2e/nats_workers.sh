#!/usr/bin/env bash
# The NATS exchange (nats_exchange.sh: two runtimes through one
# nats-server, every spike and payload byte checked both ways, the link
# statistics accounting for each) with both runtimes on two worker
# threads: the generator and the remote neuron's stand-in sit on different
# workers, so every spike also crosses a ring. Ends with "N passed, M
# failed".
export NB_RUN_ARGS="--workers 2"
export NB_NATS_SPIKES=${NB_NATS_SPIKES:-300000}
exec bash "$(dirname "$0")/nats_exchange.sh"
