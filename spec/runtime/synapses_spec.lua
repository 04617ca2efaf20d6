-- Synapses in agents' hands: nb:connect to neurons discovered at run time,
-- a duplicate connect, nb:disconnect during a flow (nothing routed lost),
-- bad arguments, the weight a spike was delivered with, and the changes
-- counted in the statistics.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

local REWIRE = helpers.fixture("runtime/rewire.lua")

-- Returns the harness with agent's command cmd delivered (one tick).
local function run(h, cmd)
  h:inject("agent", cmd)
  h:tick(1)
end

-- Ticks h for ms milliseconds of real time (STDP and rewards run on the
-- spike clock, and free ticks are microseconds apart).
local function tick_for(h, ms)
  local R = testing.lib()
  local t0 = R.nb_rt_now_ns()
  while R.nb_rt_now_ns() - t0 < ms * 1e6 do h:tick(1) end
end

local function last(h)
  local r = h:state("agent").results
  return r[#r]
end

describe("nb:connect", function()
  it("connects to neurons discovered at run time, from the next tick", function()
    local h = testing.manifest(REWIRE)
    assert.is_nil(h:weight("agent", "w1")) -- no synapse yet
    run(h, "connect_cap work 0.3")
    assert.same({ true, true }, last(h))
    -- Applied after the tick the agent asked in.
    assert.near(0.3, h:weight("agent", "w1"), 1e-6)
    assert.near(0.3, h:weight("agent", "w2"), 1e-6)
    run(h, "weight w2")
    assert.near(0.3, last(h), 1e-6)
    run(h, "flow w1 3")
    h:tick(2)
    local got = h:received("w1")
    assert.equal(3, #got)
    assert.near(0.3, got[1].weight, 1e-6)
    assert.equal(2, h:learning().connected)
    h:close()
  end)

  it("replaces the synapse on a duplicate connect", function()
    local h = testing.manifest(REWIRE)
    h:inject("agent", "connect w1 0.3")
    h:inject("agent", "connect w1 0.6")
    h:tick(1)
    assert.near(0.6, h:weight("agent", "w1"), 1e-6)
    run(h, "flow w1 1")
    h:tick(2)
    assert.near(0.6, h:received("w1")[1].weight, 1e-6)
    assert.equal(2, h:learning().connected)
    h:close()
  end)

  it("reports bad arguments clearly, as nil and a message", function()
    local h = testing.manifest(REWIRE)
    run(h, "bad w3")
    local r = last(h)
    assert.equal('error: nb:connect: no neuron named "nobody"', r[1])
    assert.equal('error: nb:connect: opts.weight: expected a number, got "heavy"', r[2])
    assert.matches('^error: nb:connect: opts.stdp: expected true, false, "pair"', r[3])
    assert.equal("error: nb:connect: opts.stdp.lambda: -1 is out of range, expected a number >= 0", r[4])
    assert.equal("error: nb:connect: opts.delay: unknown key (allowed: filters, from, stdp, weight)", r[5])
    assert.matches("^error: nb:connect: opts must be a table", r[6])
    assert.matches("^error: nb:connect: w3 %-> w3: not permitted", r[7])
    assert.equal("error: nb:connect: invalid argument", r[8])
    assert.matches("^error: nb:connect: opts.filters.prefix: .* is 17 bytes, expected 1 to 16", r[9])
    assert.equal("error: nb:disconnect: no synapse self -> w3", r[10])
    assert.equal("error: nb:weight: no synapse self -> w3", r[11])
    assert.equal("error: nb:reward: reward must be a finite number, got much", r[12])
    assert.equal(0, h:learning().connected)
    h:close()
  end)
end)

describe("nb:disconnect", function()
  it("loses nothing already routed: those keep their weight, later ones go without", function()
    local h = testing.manifest(REWIRE)
    run(h, "connect w1 0.3")
    run(h, "flow w1 20")          -- fired this tick, routed the next
    run(h, "disconnect w1")       -- the 20 are routed in this tick first
    assert.is_nil(h:weight("agent", "w1"))
    run(h, "flow w1 20")
    h:tick(3)
    local got = h:received("w1")
    assert.equal(40, #got)
    for i = 1, 40 do
      assert.equal("f" .. ((i - 1) % 20 + 1), got[i].payload)
      assert.near(i <= 20 and 0.3 or 1.0, got[i].weight, 1e-6)
      -- each spike its own fire time, strictly increasing per source
      if i > 1 then assert.is_true(got[i].timestamp_ns > got[i - 1].timestamp_ns) end
    end
    assert.equal(1, h:learning().disconnected)
    assert.equal(0, h:stats("w1").dead_letters)
    h:close()
  end)
end)

describe("on_spike's third argument", function()
  it("is the weight the spike was delivered with", function()
    local h = testing.manifest(REWIRE)
    h:inject("agent", "weight w1", { from = "feeder" })
    h:inject("agent", "weight w1")
    h:tick(1)
    local w = h:state("agent").weights
    assert.near(0.4, w[1], 1e-6)
    assert.equal(1.0, w[2])
    h:close()
  end)
end)

describe("a sandboxed agent", function()
  it("gets the same calls through the sandbox's handle, and spike.weight", function()
    local h = testing.agent(helpers.fixture("runtime/synapser.lua"), {
      name = "agent", sandbox = true, refractory = 0, peers = { "feeder", "w1" },
      config = { sandboxed = true },
      synapses = { { from = "feeder", to = "agent", weight = 0.4 } },
    })
    h:inject("agent", "connect w1 0.7", { from = "feeder" })
    h:tick(1)
    assert.is_true(last(h))
    assert.near(0.7, h:weight("agent", "w1"), 1e-6)
    run(h, "bad w1")
    assert.equal("error: nb:connect: no neuron named \"nobody\"", last(h)[1])
    local st = h:state("agent")
    assert.near(0.4, st.weights[1], 1e-6)
    assert.near(0.4, st.proxy_weights[1], 1e-6)
    assert.equal(1.0, st.proxy_weights[2])
    h:close()
  end)
end)

describe("nb:reward", function()
  it("turns eligibility into weight change, by the reward's sign", function()
    local h = testing.manifest(REWIRE)
    run(h, "connect_reward w3 0.5")
    run(h, "flow w3 5")
    tick_for(h, 5) -- routed, and w3 fired after them: eligibility
    local before = h:weight("agent", "w3")
    assert.near(0.5, before, 1e-6) -- eligibility alone changes nothing
    run(h, "reward w3 1")
    tick_for(h, 200) -- w3 fires every tick: the weight is kept up to date
    local up = h:weight("agent", "w3")
    assert.is_true(up > before + 0.001, "weight " .. up)
    run(h, "reward w3 -2")
    tick_for(h, 200)
    assert.is_true(h:weight("agent", "w3") < up - 0.001)
    assert.equal(2, h:learning().rewards)
    h:close()
  end)

  it("reaches every neuron of a region, as modulatory spikes", function()
    local h = testing.manifest(REWIRE)
    run(h, "reward_region pool 0.5")
    assert.equal(2, last(h))
    h:tick(2)
    for _, w in ipairs({ "w1", "w2" }) do
      local got = h:received(w)
      assert.equal(1, #got, w)
      assert.equal("modulatory", got[1].kind)
      assert.equal("0.5", got[1].payload)
    end
    assert.equal(2, h:learning().rewards)
    run(h, "reward_region nowhere 1")
    assert.equal(0, last(h))
    h:close()
  end)
end)
