-- Across processes, the asking half: asks agents/tcp_back.lua's squarer
-- for squares over TCP and prints the answers (start tcp_back.lua first;
-- this side redials with backoff until it answers).
--
--   neuronbus run agents/tcp_front.lua --stats
--
-- "squarer" is a remote neuron: a local proxy that local agents address by
-- name like any other; what is fired to it leaves through the link to
-- 127.0.0.1:7401 (the peer is dialled because a remote names it). The last
-- question carries 100 KB, which crosses with its bytes (or, when both
-- manifests share one arena file, as a reference into it).
return {
  name = "front",
  tick = "10ms",
  peers = {
    -- resend: what the back did not confirm is sent again after a
    -- reconnect; drop would count it lost instead. Both report it.
    { url = "tcp://127.0.0.1:7401", policy = "resend", queue = 4096 },
  },
  neurons = {
    asker = { script = "tcp_asker.lua", threshold = 0, refractory = 0,
              config = { to = "squarer", count = 20 } },
    squarer = { remote = "tcp://127.0.0.1:7401/squarer" },
  },
}
