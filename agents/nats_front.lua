-- agents/nats_front.lua: the asker of agents/tcp_front.lua, asking the
-- squarer of the runtime "back" through a NATS server (docs/nats.md).
return {
  name = "front",
  tick = "10ms",
  nats = { url = "nats://127.0.0.1:4222", cluster = "demo" },
  neurons = {
    asker = { script = "tcp_asker.lua", threshold = 0, refractory = 0,
              config = { to = "squarer", count = 20 } },
    squarer = { remote = "nats://back/squarer" },  -- runtime "back", neuron "squarer"
  },
}
