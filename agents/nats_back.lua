-- agents/nats_back.lua: the squarer of agents/tcp_back.lua, reached through
-- a NATS server instead of a TCP link (docs/nats.md). Its card announces
-- the squarer with its capability, so other runtimes find it.
return {
  name = "back",
  tick = "1ms",
  nats = { url = "nats://127.0.0.1:4222", cluster = "demo" },
  neurons = {
    squarer = { script = "tcp_squarer.lua", refractory = 0,
                capabilities = { "square" } },
  },
}
