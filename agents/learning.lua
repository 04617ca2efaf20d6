-- The learning demo: a router learns which worker answers best.
--
--   producer --req--> learn-router --req--> good | fair | poor
--                        (picks by nb:weight)      |
--                                                  +--res--> evaluator
--   evaluator --reward (a modulatory spike)--> the worker that answered
--
-- The workers upper-case a word, each right with its own probability
-- (config.quality: 0.9, 0.6, 0.3). The evaluator checks every answer and
-- rewards the worker that gave it: +1 - (the running mean of right
-- answers) when right, 0 - that mean when wrong, so only an answer better
-- than the usual earns a positive reward. The router -> worker synapses
-- learn by reward (stdp = "reward": NEST's stdp_dopamine_synapse, see
-- docs/learning.md): a request routed to a worker that fires right after
-- leaves eligibility on that synapse, and the reward turns it into weight
-- change. The router sends each request to the worker of highest weight
-- (nb:weight), or, one time in ten, to one at random (exploration), and
-- prints the weights every 200 requests: within a few seconds the good
-- worker's weight leads and it gets most of the work.
--
--   neuronbus run agents/learning.lua --for 4s --stats
local TICK = "1ms"

local neurons = {
  producer = {
    script = "producer.lua",
    threshold = 0, refractory = 0,
    config = { target = "learn-router", rate = 200, tick = TICK },
  },
  ["learn-router"] = {
    script = "learn_router.lua",
    threshold = 0, refractory = 0,
    config = { capability = "answer", explore = 0.1, seed = 7, report_every = 200 },
  },
  evaluator = {
    script = "evaluator.lua",
    refractory = 0,
    config = { smoothing = 0.02 },
  },
}

local synapses = {}
local WORKERS = { good = 0.9, fair = 0.6, poor = 0.3 }
local seed = 11
for _, name in ipairs({ "good", "fair", "poor" }) do
  neurons[name] = {
    script = "learn_worker.lua",
    capabilities = { "answer" },
    -- A pacemaker: it fires every tick, so a request routed to it is
    -- followed by post spikes (the pairing that makes eligibility).
    threshold = 0, refractory = 0,
    config = { quality = WORKERS[name], seed = seed, evaluator = "evaluator" },
  }
  seed = seed + 1
  synapses[#synapses + 1] = {
    from = "learn-router", to = name, weight = 0.5,
    stdp = { mode = "reward", a_plus = 0.0001, a_minus = 0, tau_c = "200ms",
             tau_n = "20ms", w_min = 0.05, w_max = 1.0 },
  }
end

return {
  name = "learning",
  tick = TICK,
  neurons = neurons,
  synapses = synapses,
}
