-- agents/counter.lua through the harness.
local testing = require("neuronbus.testing")

describe("agents/counter.lua", function()
  local h
  before_each(function()
    h = testing.agent("agents/counter.lua", {
      name = "counter", refractory = 0,
      config = { every = 2, report_to = "sink" }, peers = { "src", "sink" },
    })
  end)
  after_each(function()
    h:close()
  end)

  it("counts by kind and by source, reporting every config.every spikes", function()
    h:inject("counter", "a", { from = "src" })
    h:inject("counter", "bb", { from = "src", kind = "inhibitory" })
    h:inject("counter", "", { from = "sink", kind = "modulatory" })
    h:inject("counter", "dddd", { from = "src" })
    h:inject("counter", "e", { from = "src" })
    h:tick(5)
    local s = h:state("counter")
    assert.equal(5, s.count)
    assert.equal(8, s.bytes)
    assert.same({ excitatory = 3, inhibitory = 1, modulatory = 1 }, s.by_kind)
    assert.equal(4, s.by_source[tostring(h:id("src"))])
    assert.equal(1, s.by_source[tostring(h:id("sink"))])
    local reports = {}
    for i, r in ipairs(h:received("sink")) do
      reports[i] = r.payload
    end
    assert.same({ "count:2", "count:4" }, reports)
    assert.equal(5, h:stats("counter").spikes_in)
  end)

  it("counts a large payload by its length", function()
    h:inject("counter", ("x"):rep(1000), { from = "src" })
    h:tick(3)
    assert.equal(1000, h:state("counter").bytes)
  end)
end)
