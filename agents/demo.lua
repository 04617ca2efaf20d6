-- The default demo: a request pipeline.
--
--   producer --req--> router --req--> worker-1 | worker-2 | worker-3
--                       ^                       |
--                       +---------res-----------+   (reply to spike.source)
--                       |
--                       +--res--> aggregator
--
-- The producer sends RATE requests a second; the router discovers the
-- workers by their "work" capability and deals requests round-robin;
-- each worker upper-cases its request and replies to the router, which
-- forwards the result to the aggregator; the aggregator prints a summary
-- every second and at shutdown.
--
--   neuronbus run agents/demo.lua --for 3s --stats
local TICK = "1ms"
local RATE = 200 -- requests per second
local WORKERS = 3

local neurons = {
  producer = {
    script = "producer.lua",
    region = "demo/input",
    capabilities = { "produce" },
    threshold = 0, refractory = 0, -- a pacemaker: tick runs every tick
    config = { target = "router", rate = RATE, tick = TICK },
  },
  router = {
    script = "router.lua",
    region = "demo/core",
    capabilities = { "route" },
    threshold = 0, refractory = 0, -- fires every tick to retry its queue
    config = { capability = "work", sink = "aggregator" },
  },
  aggregator = {
    script = "aggregator.lua",
    region = "demo/output",
    capabilities = { "aggregate" },
    refractory = 0,
    config = { report_every = "1s" },
  },
}

local synapses = {
  -- Only requests pass from the producer to the router.
  { from = "producer", to = "router", filters = { prefix = "req:" } },
  -- Results reach the aggregator; the weights stay fixed.
  { from = "router", to = "aggregator", filters = { prefix = "res:" } },
}

for i = 1, WORKERS do
  local name = "worker-" .. i
  neurons[name] = {
    script = "worker.lua",
    region = "demo/workers",
    capabilities = { "work" },
    refractory = 0,
    config = { job = "upper" },
  }
  -- Router to worker learns with STDP. At 0.9 one request alone does not
  -- fire a worker (threshold 1.0; on_spike still runs for every request);
  -- each fire just after a request potentiates the synapse (pre before
  -- post), so the weight climbs toward 1.0: watch it in --stats.
  synapses[#synapses + 1] = { from = "router", to = name, weight = 0.9, stdp = true }
end

return {
  name = "demo",
  tick = TICK,
  arena = { size = "16MB" },
  axon = { capacity = 4096 },
  neurons = neurons,
  synapses = synapses,
}
