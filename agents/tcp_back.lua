-- Across processes, the serving half: a squarer that answers whoever asks,
-- reachable over TCP. Start it first, then agents/tcp_front.lua:
--
--   neuronbus run agents/tcp_back.lua --stats     # listens on 127.0.0.1:7401
--   neuronbus run agents/tcp_front.lua --stats    # dials it, asks, prints
--
-- The front's asker reaches "squarer" as a remote neuron; here its
-- questions arrive from a local proxy named "front/asker" (made when the
-- first one arrives), so the squarer's reply to spike.source goes back over
-- the same link. Nothing in the agents knows about TCP.
return {
  name = "back",
  tick = "1ms",
  listen = "tcp://127.0.0.1:7401",
  -- Links peers open to us: keep what could not be confirmed, and resend.
  accept = { policy = "resend" },
  neurons = {
    squarer = { script = "tcp_squarer.lua", refractory = 0 },
  },
}
