-- agents/demo.lua end to end through the harness: every request the
-- producer sent comes back to the aggregator once the pipeline is quiet.
local testing = require("neuronbus.testing")

describe("agents/demo.lua", function()
  it("completes every request end to end", function()
    local h = testing.manifest("agents/demo.lua")
    h:tick(1000) -- one second of 1 ms ticks: about 200 requests
    h:inject("producer", "stop", { from = "aggregator" })
    h:tick(200) -- drain
    local producer, router = h:state("producer"), h:state("router")
    local aggregator = h:state("aggregator")
    assert.is_true(producer.sent >= 150, "sent " .. producer.sent)
    assert.equal(producer.sent, router.routed)
    assert.equal(producer.sent, router.forwarded)
    assert.equal(producer.sent, aggregator.total)
    assert.equal(producer.sent, aggregator.highest)
    assert.equal(0, aggregator.duplicates)
    assert.equal(0, aggregator.bad)
    -- round-robin over three workers: each did a third
    local per = {}
    for _, n in pairs(aggregator.by_worker) do
      per[#per + 1] = n
    end
    assert.equal(3, #per)
    table.sort(per)
    assert.is_true(per[3] - per[1] <= 1)
    for _, name in ipairs({ "producer", "router", "worker-1", "worker-2", "worker-3",
                            "aggregator" }) do
      assert.equal(0, h:stats(name).errors, name)
    end
    -- STDP potentiated router -> worker above its starting weight
    assert.is_true(h:weight("router", "worker-1") > 0.9)
    h:close()
  end)
end)
