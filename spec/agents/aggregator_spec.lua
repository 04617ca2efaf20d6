-- agents/aggregator.lua through the harness.
local testing = require("neuronbus.testing")

describe("agents/aggregator.lua", function()
  it("totals results by worker, counting duplicates and unreadable ones", function()
    local h = testing.agent("agents/aggregator.lua", {
      name = "aggregator", refractory = 0, config = { quiet = true }, peers = { "router" },
    })
    h:inject("aggregator", "res:2:w2:B", { from = "router" })
    h:inject("aggregator", "res:1:w1:A", { from = "router" })
    h:inject("aggregator", "res:3:w1:C", { from = "router" })
    h:inject("aggregator", "res:2:w2:B", { from = "router" })
    h:inject("aggregator", "garbage", { from = "router" })
    h:tick(5)
    local s = h:state("aggregator")
    assert.equal(3, s.total)
    assert.same({ w1 = 2, w2 = 1 }, s.by_worker)
    assert.equal(1, s.duplicates)
    assert.equal(1, s.bad)
    assert.equal(3, s.highest)
    assert.equal(3, s.low)      -- 1..3 all arrived
    assert.same({}, s.seen)     -- so nothing is kept per result
    h:close()
  end)
end)
