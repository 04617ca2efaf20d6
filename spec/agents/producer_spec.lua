-- agents/producer.lua through the harness.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

local payloads = helpers.payloads

describe("agents/producer.lua", function()
  local function producer(config)
    return testing.agent("agents/producer.lua", {
      name = "producer", threshold = 0, refractory = 0,
      config = config, peers = { "sink" },
    })
  end

  it("sends config.rate per second at the manifest's tick", function()
    -- 500/s at 1 ms ticks is one spike every other tick.
    local h = producer({ target = "sink", rate = 500, tick = "1ms" })
    h:tick(10)
    assert.equal(5, h:state("producer").sent)
    h:tick(10)
    assert.equal(10, h:state("producer").sent)
    h:close()
  end)

  it("stops after config.total, in order, to its target", function()
    local h = producer({ target = "sink", rate = 2000, tick = "1ms", total = 7 })
    h:tick(20)
    assert.same({ "req:1:alpha", "req:2:bravo", "req:3:charlie", "req:4:delta",
                  "req:5:echo", "req:6:foxtrot", "req:7:golf" },
                payloads(h:received("sink")))
    assert.equal(7, h:state("producer").sent)
    assert.equal(7, h:stats("producer").spikes_out)
    h:close()
  end)

  it("sends per_tick spikes per tick when free-running", function()
    local h = producer({ target = "sink", tick = "free", per_tick = 3 })
    h:tick(4)
    assert.equal(12, h:state("producer").sent)
    h:inject("producer", "stop", { from = "sink" }) -- or close drains forever
    h:close()
  end)

  it("retries what a full axon refused, losing nothing", function()
    local h = testing.agent("agents/producer.lua", {
      name = "producer", threshold = 0, refractory = 0, axon_capacity = 2,
      config = { target = "sink", tick = "free", per_tick = 8 }, peers = { "sink" },
    })
    h:tick(10)
    local s = h:state("producer")
    assert.is_true(s.full > 0, "the axon never filled")
    local got = h:received("sink")
    assert.is_true(#got > 0 and #got <= s.sent)
    for i, r in ipairs(got) do
      assert.equal(i, tonumber(r.payload:match("^req:(%d+):")))
    end
    h:inject("producer", "stop", { from = "sink" })
    h:close()
  end)

  it("pauses on stop and resumes on start", function()
    local h = producer({ target = "sink", tick = "free", per_tick = 1 })
    h:tick(3)
    h:inject("producer", "stop", { from = "sink" })
    h:tick(10)
    local paused = h:state("producer").sent
    assert.is_true(paused <= 5)
    h:tick(10)
    assert.equal(paused, h:state("producer").sent)
    h:inject("producer", "start", { from = "sink" })
    h:tick(10)
    assert.is_true(h:state("producer").sent > paused)
    h:inject("producer", "stop", { from = "sink" })
    h:close()
  end)

  it("refuses to start without a target", function()
    local h = testing.agent("agents/producer.lua", {
      name = "producer", threshold = 0, refractory = 0, quiet = true,
      config = { rate = 10 }, peers = { "sink" },
    })
    local errs = h:errors("producer")
    assert.equal(1, #errs)
    assert.matches("config.target is required", errs[1], 1, true)
    h:tick(5)
    assert.same({}, h:received("sink"))
    h:close()
  end)
end)
