-- Ping-pong: ping serves, pong returns, ten rallies.
--
--   neuronbus run agents/pingpong.lua --ticks 100 --stats
return {
  name = "pingpong",
  tick = "1ms",
  neurons = {
    -- A pacemaker, so its tick can serve the first ball.
    ping = { script = "ping.lua", threshold = 0, refractory = 0,
             config = { peer = "pong", rounds = 10 } },
    -- A default integrate-and-fire neuron: each ball fires it, then it
    -- rests 2 ticks (refractory) before the next one is delivered.
    pong = { script = "pong.lua" },
  },
}
