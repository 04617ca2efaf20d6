-- Run from my-agents/ with `neuronbus test` (after `make install`).
local testing = require("neuronbus.testing")

describe("greeter", function()
  it("answers the sender of each spike", function()
    local h = testing.agent("greeter.lua", {
      config = { greeting = "hi" }, refractory = 0, peers = { "alice" },
    })
    h:inject("greeter", "bob", { from = "alice" })
    h:tick(2)
    assert.equal("hi, bob", h:received("alice")[1].payload)
    assert.equal(1, h:state("greeter").count)
    h:close()
  end)
end)
