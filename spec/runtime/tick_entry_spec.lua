-- A firing neuron whose agent has no tick function costs no entry into
-- its state (cell.has_tick, kept by neuronbus.agent): the agent may still
-- add or drop agent.tick at any time, or get one from a hot reload, and
-- tick is called exactly when it exists.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

local LATE = helpers.fixture("runtime/late_tick.lua")

describe("tick without a tick function", function()
  it("follows agent.tick added and dropped from on_spike", function()
    local h = testing.agent(LATE, { name = "p", threshold = 0, refractory = 0 })
    h:tick(5)
    assert.equal(0, h:state("p").ticks)
    h:inject("p", "add")
    h:tick(1) -- delivered, then it fires: tick exists by then
    assert.equal(1, h:state("p").ticks)
    h:tick(4)
    assert.equal(5, h:state("p").ticks)
    h:inject("p", "drop")
    h:tick(3)
    assert.equal(5, h:state("p").ticks)
    assert.equal(13, h:stats("p").fires) -- it fired at every tick
    assert.equal(0, h:stats("p").errors)
    h:close()
  end)

  it("follows a hot reload that brings a tick function", function()
    local h = testing.agent(LATE, { name = "p", threshold = 0, refractory = 0, quiet = true })
    h:tick(3)
    assert.equal(0, h:state("p").ticks)
    local src = assert(io.open(LATE, "rb")):read("*a")
    src = src:gsub("\nreturn agent", "\nagent.tick = tick\nreturn agent")
    assert.is_true(h:reload("p", src))
    h:tick(2)
    assert.equal(2, h:state("p").ticks)
    h:close()
  end)
end)
