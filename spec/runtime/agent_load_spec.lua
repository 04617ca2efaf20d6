-- The agent contract at load: a script that does not return a table, or
-- whose table lacks on_spike, is refused with the file and the reason. And
-- an agent's Lua error at run time is reported with the neuron's name and
-- a traceback, counted, and the process and the other neurons go on.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

-- Returns the error testing.agent raises for a fixture script.
local function refusal(name)
  local script = helpers.fixture("runtime/" .. name)
  local ok, err = pcall(testing.agent, script)
  assert.is_false(ok)
  assert.truthy(err:find(script, 1, true), "message names the file: " .. err)
  return err
end

describe("loading an agent", function()
  it("refuses a script that returns a number", function()
    assert.matches("must return a table with an on_spike function, but it returned a number",
      refusal("bad_not_table.lua"))
  end)

  it("refuses a script that returns nothing", function()
    assert.matches("but it returned nothing", refusal("bad_nothing.lua"))
  end)

  it("refuses a table without on_spike", function()
    assert.matches("the returned table has no on_spike function", refusal("bad_no_on_spike.lua"))
  end)

  it("refuses a script that does not parse, with the line", function()
    assert.matches("bad_syntax.lua:3: .* expected near", refusal("bad_syntax.lua"))
  end)

  it("refuses a script that raises while loading, with a traceback", function()
    local err = refusal("bad_raises.lua")
    assert.matches("this agent refuses to load", err)
    assert.matches("stack traceback", err)
  end)

  it("refuses filters that are not functions", function()
    assert.matches("filters.even must be a function, got a boolean", refusal("bad_filters.lua"))
  end)

  it("refuses a missing script", function()
    local ok, err = pcall(testing.agent, "spec/fixtures/runtime/no_such_agent.lua")
    assert.is_false(ok)
    -- the manifest validator's message: testing.agent goes through it
    assert.matches("neurons.no_such_agent.script: cannot read script .*no_such_agent.lua: "
      .. "No such file or directory", err)
  end)

  it("refuses a manifest whose custom filter the target does not export", function()
    local ok, err = pcall(testing.manifest, helpers.fixture("runtime/missing_filter.lua"))
    assert.is_false(ok)
    assert.matches('filtered%.lua:%d+: neuron dst: no filters%.odd function %(.*missing_filter%.lua: synapses%[1%]%.filters%.custom names it%)', err)
  end)
end)

describe("an agent's Lua error", function()
  local h
  before_each(function()
    h = testing.agent(helpers.fixture("runtime/failing.lua"),
      { name = "fragile", refractory = 0, peers = { "src" }, quiet = true })
  end)
  after_each(function() h:close() end)

  it("is reported with where it happened and a traceback, and counted", function()
    h:inject("fragile", "boom", { from = "src" })
    h:tick(2)
    assert.equal(1, h:stats("fragile").errors)
    local errs = h:errors("fragile")
    assert.equal(1, #errs)
    assert.matches("^on_spike: .*failing.lua:%d+: kaboom: on_spike was handed boom", errs[1])
    assert.matches("stack traceback:", errs[1])
    assert.matches("in function 'explode'", errs[1]) -- the agent's own frames
  end)

  it("does not lose the rest of the batch", function()
    h:inject("fragile", "a", { from = "src" })
    h:inject("fragile", "boom", { from = "src" })
    h:inject("fragile", "b", { from = "src" })
    h:inject("fragile", "boom", { from = "src" })
    h:inject("fragile", "c", { from = "src" })
    h:tick(2)
    assert.same({ "a", "b", "c" }, h:state("fragile").got)
    assert.equal(2, h:stats("fragile").errors)
    -- and the neuron keeps working on later ticks
    h:inject("fragile", "d", { from = "src" })
    h:tick(2)
    assert.same({ "a", "b", "c", "d" }, h:state("fragile").got)
  end)

  it("in tick is reported too", function()
    local t = testing.agent(helpers.fixture("runtime/failing.lua"),
      { name = "ticker", threshold = 0, refractory = 0, config = { tick_fails = true },
        quiet = true })
    t:tick(3)
    assert.equal(3, t:stats("ticker").errors)
    assert.matches("^tick: .*kaboom: tick", t:errors("ticker")[1])
    t:close()
  end)

  it("in init is reported and the neuron still runs", function()
    local t = testing.manifest(helpers.fixture("runtime/init_error.lua"), { quiet = true })
    assert.equal(1, t:stats("bad").errors)
    assert.matches("^init: ", t:errors("bad")[1])
    t:inject("good", "hi")
    t:tick(2)
    assert.same({ "hi" }, helpers.payloads(t:received("good")))
    t:close()
  end)
end)
