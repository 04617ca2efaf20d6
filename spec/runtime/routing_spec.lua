-- Routing semantics seen from Lua: unicast with and without a synapse,
-- broadcast through each kind of dendritic filter, refractory deferral,
-- and STDP changing a weight.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

local HANDLE = helpers.fixture("runtime/handle.lua")

describe("unicast", function()
  it("needs no synapse: delivered with weight 1.0", function()
    local h = testing.agent(HANDLE, { name = "agent", refractory = 0, peers = { "sink" } })
    h:inject("agent", "fire_to sink hello")
    h:tick(3)
    local got = h:received("sink")
    assert.same({ "hello" }, helpers.payloads(got))
    assert.equal(1.0, got[1].weight)
    h:close()
  end)

  it("goes through the synapse's filters and weight when one joins the pair", function()
    local h = testing.agent(HANDLE, {
      name = "agent", refractory = 0, peers = { "sink" },
      synapses = { { from = "agent", to = "sink", weight = 0.25,
                     filters = { prefix = "ok:" } } },
    })
    h:inject("agent", "fire_to sink ok:pass")
    h:inject("agent", "fire_to sink no:stopped")
    h:tick(3)
    local got = h:received("sink")
    assert.same({ "ok:pass" }, helpers.payloads(got))
    assert.equal(0.25, got[1].weight)
    assert.equal(1, h:stats("sink").filtered)
    h:close()
  end)

  it("keeps the order of one source's spikes to one target", function()
    local h = testing.agent(HANDLE, { name = "agent", refractory = 0, peers = { "sink" } })
    for i = 1, 20 do h:inject("agent", "fire_to sink " .. i) end
    h:tick(3)
    local want = {}
    for i = 1, 20 do want[i] = tostring(i) end
    assert.same(want, helpers.payloads(h:received("sink")))
    h:close()
  end)
end)

describe("broadcast through filters", function()
  local h
  before_each(function()
    h = testing.agent(HANDLE, {
      name = "agent", refractory = 0,
      peers = { "any", "inhib", "urgent", "tagged" },
      synapses = {
        { from = "agent", to = "any" },
        { from = "agent", to = "inhib", filters = { kind = "inhibitory" } },
        { from = "agent", to = "urgent", filters = { priority = 100 } },
        { from = "agent", to = "tagged", filters = { prefix = "t:" } },
      },
    })
  end)
  after_each(function() h:close() end)

  it("reaches each synapse whose filters pass", function()
    h:inject("agent", "fire #65535 excitatory 0 plain")
    h:inject("agent", "fire #65535 inhibitory 0 calm")
    h:inject("agent", "fire #65535 excitatory 200 hurry")
    h:inject("agent", "fire #65535 excitatory 0 t:tag")
    h:tick(3)
    assert.same({ "plain", "calm", "hurry", "t:tag" }, helpers.payloads(h:received("any")))
    assert.same({ "calm" }, helpers.payloads(h:received("inhib")))
    assert.same({ "hurry" }, helpers.payloads(h:received("urgent")))
    assert.same({ "t:tag" }, helpers.payloads(h:received("tagged")))
  end)
end)

describe("custom filters", function()
  it("are the target agent's filters[name], run in its own state", function()
    local h = testing.manifest(helpers.fixture("runtime/custom_filter.lua"), { quiet = true })
    h:inject("src", "fire_to dst ab")     -- even: passes
    h:inject("src", "fire_to dst abc")    -- odd: stopped
    h:inject("src", "fire_to dst abcd")   -- even: passes
    h:tick(3)
    local s = h:state("dst")
    assert.same({ "ab", "abcd" }, s.got)
    assert.equal(3, s.asked)
    assert.equal(1, h:stats("dst").filtered)
    h:close()
  end)

  it("that raise pass nothing and count as the target's errors", function()
    local h = testing.manifest(helpers.fixture("runtime/custom_filter.lua"), { quiet = true })
    h:inject("src", "fire_to broken x")
    h:tick(3)
    assert.same({}, h:state("broken").got)
    assert.equal(1, h:stats("broken").errors)
    local errs = h:errors("broken")
    assert.equal(1, #errs)
    assert.matches("filters.broken: .*filter exploded", errs[1])
    assert.matches("stack traceback", errs[1])
    h:close()
  end)
end)

describe("refractory", function()
  it("defers delivery until the period ends, in order, without loss", function()
    local h = testing.agent(helpers.fixture("runtime/recorder.lua"),
      { name = "r", refractory = 2, peers = { "src" } })
    h:inject("r", "first", { from = "src" })
    h:tick(1)
    assert.equal(1, #h:received("r"))     -- delivered, and it fired
    assert.equal(1, h:stats("r").fires)
    h:inject("r", "second", { from = "src" })
    h:inject("r", "third", { from = "src" })
    h:tick(2)
    assert.equal(1, #h:received("r"))     -- still refractory: waiting
    assert.is_true(h:stats("r").deferred > 0)
    h:tick(3)
    assert.same({ "first", "second", "third" }, helpers.payloads(h:received("r")))
    h:close()
  end)
end)

describe("STDP", function()
  it("changes a learning synapse's weight, and not a fixed one", function()
    local h = testing.manifest(helpers.fixture("runtime/stdp.lua"))
    assert.near(0.5, h:weight("src", "dst"), 1e-6)
    h:inject("src", "fire_to dst x")
    h:inject("src", "fire_to plain x")
    h:tick(4)
    assert.equal(1, h:stats("dst").fires)
    -- one pre before one post: potentiation by at most a_plus (0.01)
    local w = h:weight("src", "dst")
    assert.is_true(w > 0.5 and w <= 0.51 + 1e-6, "weight " .. w)
    assert.near(0.5, h:weight("src", "plain"), 1e-6)
    assert.is_nil(h:weight("dst", "src"))
    h:close()
  end)
end)
