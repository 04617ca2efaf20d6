-- The handle nb seen from an agent: identity, state, firing by id and by
-- name, every kind and priority, errors returned (never raised), discovery.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

local HANDLE = helpers.fixture("runtime/handle.lua")

-- One handle agent ("agent") beside recorders; ids follow name order.
local function harness(opts)
  opts = opts or {}
  return testing.agent(HANDLE, {
    name = "agent", refractory = 0,
    capabilities = { "echo", "handle" }, regions = { "test/handle" },
    config = { capability = opts.capability or "echo", region = "test" },
    peers = { "sink", "w1" },
    axon_capacity = opts.axon_capacity,
  })
end

describe("the nb handle", function()
  it("knows its id and name, and init got the config", function()
    local h = harness()
    local s = h:state("agent")
    assert.equal(h:id("agent"), s.id)
    assert.equal("agent", s.name)
    assert.same({ capability = "echo", region = "test" }, s.config)
    assert.equal(0xFFFF, s.broadcast_id)
    h:close()
  end)

  it("keeps nb.state across spikes and ticks", function()
    local h = harness()
    h:inject("agent", "fire_to sink one")
    h:tick(2)
    h:inject("agent", "fire_to sink two")
    h:tick(2)
    assert.same({ "ok", "ok" }, h:state("agent").results)
    h:close()
  end)

  it("fires to a name or an id, with the payload", function()
    local h = harness()
    h:inject("agent", "fire_to sink by-name")
    h:inject("agent", "fire_to #" .. h:id("w1") .. " by-id")
    h:inject("agent", "fire_to sink")
    h:tick(3)
    local sink, w1 = h:received("sink"), h:received("w1")
    assert.same({ "by-name", "" }, helpers.payloads(sink))
    assert.same({ "by-id" }, helpers.payloads(w1))
    assert.equal("agent", sink[1].source)
    assert.equal("sink", sink[1].target)
    assert.equal("excitatory", sink[1].kind)
    assert.equal(0, sink[1].priority)
    -- sequences count per source, in firing order
    assert.same({ 0, 2 }, helpers.pluck(sink, "sequence"))
    assert.same({ 1 }, helpers.pluck(w1, "sequence"))
    h:close()
  end)

  it("fires every kind and priority with nb:fire{}", function()
    local h = harness()
    h:inject("agent", "fire sink inhibitory 7 inh")
    h:inject("agent", "fire sink modulatory 255 mod")
    h:inject("agent", "fire sink excitatory 0 exc")
    h:tick(3)
    local got = h:received("sink")
    assert.same({ "inhibitory", "modulatory", "excitatory" }, helpers.pluck(got, "kind"))
    assert.same({ 7, 255, 0 }, helpers.pluck(got, "priority"))
    assert.same({ "inh", "mod", "exc" }, helpers.payloads(got))
    -- what the agent fired is recorded too
    assert.same({ "inh", "mod", "exc" }, helpers.payloads(h:fired("agent")))
    h:close()
  end)

  it("returns nil and a message for bad calls instead of raising", function()
    local h = harness()
    h:inject("agent", "bad")
    h:tick(2)
    local r = h:state("agent").results[1]
    assert.matches('^error: no neuron named "nobody"', r[1])
    assert.matches("^error: no neuron with id 60000", r[2])
    assert.matches("^error: payload must be a string or nil, got a number", r[3])
    assert.matches('kind must be "excitatory", "inhibitory" or "modulatory", got "loud"', r[4])
    assert.matches("priority must be an integer 0..255, got 256", r[5])
    assert.matches("target is required", r[6])
    assert.matches("expects a table", r[7])
    assert.matches("target must be a neuron id or name, got a table", r[8])
    assert.equal(0, h:stats("agent").errors)
    assert.same({}, h:received("sink"))
    h:close()
  end)

  it("returns nil and 'axon full' when the axon is full, never raises", function()
    local h = harness({ axon_capacity = 16 })
    h:inject("agent", "flood 40", { from = "sink" })
    h:tick(1)
    local r = h:state("agent").results[1]
    assert.equal(16, r.sent)
    assert.equal(24, r.refused)
    assert.matches("^axon full", r.last)
    assert.equal(0, h:stats("agent").errors)
    assert.equal(24, h:stats("agent").full)
    h:tick(2)
    assert.equal(16, #h:received("sink"))
    h:close()
  end)

  it("broadcasts along outgoing synapses only", function()
    local h = testing.agent(HANDLE, {
      name = "agent", refractory = 0, peers = { "sink", "w1", "w2" },
      synapses = { { from = "agent", to = "w1", weight = 1 },
                   { from = "agent", to = "w2", weight = 0.5 } },
    })
    h:inject("agent", "broadcast hi")
    h:tick(3)
    assert.same({ "hi" }, helpers.payloads(h:received("w1")))
    assert.same({ "hi" }, helpers.payloads(h:received("w2")))
    assert.same({}, h:received("sink"))
    assert.equal("broadcast", h:fired("agent")[1].target)
    h:close()
  end)

  it("fires to a region subtree: every neuron in it but itself", function()
    local h = testing.manifest(helpers.fixture("runtime/cards.lua"))
    h:inject("agent", "fire_region test hi")
    h:inject("agent", "fire_region nowhere")
    h:tick(3)
    -- "test" holds agent (not fired to: the sender) and e1, not "testing"
    local r = h:state("agent").results -- (then e1's echo of "hi" arrives)
    assert.same({ 1, 0 }, { r[1], r[2] })
    local fired = h:fired("agent")
    assert.same({ "e1" }, helpers.pluck(fired, "target"))
    assert.same({ "hi" }, helpers.payloads(fired))
    h:close()
  end)

  it("discovers cards by capability and by region", function()
    local h = testing.manifest(helpers.fixture("runtime/cards.lua"))
    local s = h:state("agent")
    -- capability "echo": agent itself and e1, in id order
    assert.same({ "agent", "e1" }, helpers.pluck(s.discovered, "name"))
    assert.same({ h:id("agent"), h:id("e1") }, helpers.pluck(s.discovered, "id"))
    assert.same({ "echo", "handle" }, s.discovered[1].capabilities)
    assert.same({ "test/handle" }, s.discovered[1].regions)
    -- region "test" holds test/handle and test/echo, not "testing"
    assert.same({ "agent", "e1" }, helpers.pluck(s.region, "name"))
    assert.same({}, s.nobody)
    h:close()
  end)
end)
