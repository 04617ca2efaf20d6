#!/usr/bin/env bash
# The payload soak (payload_soak.sh: patterned payloads of 47 B .. 8 KiB,
# every byte and the order checked, the arena's use and VmRSS flat, every
# segment free at the end) on two worker threads, where the source and its
# three sinks are spread over both workers: every payload crosses a ring
# between threads with its arena reference. NB_SOAK_PAYLOADS payloads
# (default 15 million; make soak sets more). Ends with "N passed, M failed".
export NB_RUN_ARGS="--workers 2"
export NB_SOAK_PAYLOADS=${NB_SOAK_PAYLOADS:-15000000}
exec bash "$(dirname "$0")/payload_soak.sh"
