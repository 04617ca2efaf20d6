-- agents/worker.lua through the harness.
local testing = require("neuronbus.testing")

describe("agents/worker.lua", function()
  local function worker(job)
    return testing.agent("agents/worker.lua", {
      name = "w", refractory = 0, config = { job = job }, peers = { "router", "other" },
    })
  end

  it("upper-cases a request and replies to its sender", function()
    local h = worker()
    h:inject("w", "req:5:hello", { from = "router" })
    h:inject("w", "req:6:there", { from = "other" })
    h:tick(5)
    local to_router, to_other = h:received("router"), h:received("other")
    assert.equal(1, #to_router)
    assert.equal("res:5:w:HELLO", to_router[1].payload)
    assert.equal("w", to_router[1].source)
    assert.equal("res:6:w:THERE", to_other[1].payload)
    assert.equal(2, h:state("w").done)
    h:close()
  end)

  it("reverses or hashes with config.job", function()
    local h = worker("reverse")
    h:inject("w", "req:1:abc", { from = "router" })
    h:tick(4)
    assert.equal("res:1:w:cba", h:received("router")[1].payload)
    h:close()
    h = worker("hash")
    h:inject("w", "req:2:hello", { from = "router" })
    h:tick(4)
    assert.equal("res:2:w:4f9f2cab", h:received("router")[1].payload) -- FNV-1a
    h:close()
  end)

  it("counts requests it cannot read and answers nothing", function()
    local h = worker()
    h:inject("w", "hello", { from = "router" })
    h:tick(4)
    assert.same({}, h:received("router"))
    assert.equal(1, h:state("w").bad)
    h:close()
  end)
end)
