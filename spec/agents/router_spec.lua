-- agents/router.lua through the harness: with a pool of workers found by
-- capability (spec/fixtures/agents/router_pool.lua), and with none.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

local payloads = helpers.payloads

describe("agents/router.lua", function()
  it("deals requests round-robin over the workers it discovers", function()
    local h = testing.manifest("spec/fixtures/agents/router_pool.lua")
    for i = 1, 5 do
      h:inject("router", "req:" .. i .. ":x", { from = "client" })
    end
    h:tick(5)
    assert.same({ "req:1:x", "req:3:x", "req:5:x" }, payloads(h:received("w1")))
    assert.same({ "req:2:x", "req:4:x" }, payloads(h:received("w2")))
    assert.same({}, h:received("idle"))
    local s = h:state("router")
    assert.same({ h:id("w1"), h:id("w2") }, s.workers)
    assert.equal(5, s.routed)
    h:close()
  end)

  it("forwards results to its sink and drops what is neither", function()
    local h = testing.manifest("spec/fixtures/agents/router_pool.lua")
    h:inject("router", "res:1:w1:X", { from = "w1" })
    h:inject("router", "hello", { from = "client" })
    h:tick(5)
    assert.same({ "res:1:w1:X" }, payloads(h:received("sink")))
    local s = h:state("router")
    assert.equal(1, s.forwarded)
    assert.equal(1, s.dropped)
    h:close()
  end)

  it("keeps requests queued while no worker exists", function()
    local h = testing.agent("agents/router.lua", {
      name = "router", threshold = 0, refractory = 0,
      config = { capability = "work", sink = "sink" }, peers = { "client", "sink" },
    })
    h:inject("router", "req:1:x", { from = "client" })
    h:tick(5)
    local s = h:state("router")
    assert.equal(0, s.routed)
    assert.equal(1, s.queue.last - s.queue.first + 1)
    assert.is_true(s.no_worker > 0)
    assert.same({}, h:fired("router"))
    h:close()
  end)
end)
