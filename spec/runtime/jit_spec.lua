-- The hot path compiles: inside an agent's own LuaJIT state, the batch
-- dispatch loop and nb:fire_to are recorded into JIT traces, and nothing
-- there aborts with an NYI (not yet implemented) bytecode or call.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

-- Returns true when a "source:line" location lies in file.
local function in_file(at, file)
  return at and at:find(file, 1, true) ~= nil
end

describe("the JIT on the hot path", function()
  local h, ev

  setup(function()
    h = testing.agent(helpers.fixture("runtime/jit_probe.lua"),
      { name = "probe", refractory = 0, threshold = 1e9, peers = { "sink" },
        config = { answers = 1200 } })
    -- Batches of 300 spikes: the dispatch loop runs hot within one tick.
    for _ = 1, 4 do
      for i = 1, 300 do
        h:inject("probe", nil, { from = "sink", priority = i % 2 })
      end
      h:tick(2)
    end
    ev = h:state("probe").jit
  end)

  teardown(function() h:close() end)

  it("delivered and answered every spike", function()
    assert.equal(1200, h:state("probe").answered)
    assert.equal(1200, #h:received("sink"))
    assert.equal(0, h:stats("probe").errors)
  end)

  it("compiles a trace that starts in the dispatch loop", function()
    local started = {}
    for _, e in ipairs(ev) do
      if e.what == "start" then started[e.trace] = e.at end
    end
    local found
    for _, e in ipairs(ev) do
      if e.what == "stop" and in_file(started[e.trace], "neuronbus/agent.lua") then
        found = e.trace
      end
    end
    assert.is_not_nil(found, "no trace started in neuronbus/agent.lua")
  end)

  -- Returns the line where pattern first matches in file.
  local function line_of(file, pattern)
    local n = 0
    for line in io.lines(file) do
      n = n + 1
      if line:find(pattern) then return n end
    end
    error(file .. ": no line matches " .. pattern)
  end

  it("records the dispatch loop, on_spike and nb:fire_to into one trace", function()
    local dispatch = "neuronbus/agent.lua:" .. line_of("lua/neuronbus/agent.lua",
      "^local function dispatch%(%)")
    local fire_to = "neuronbus/agent.lua:" .. line_of("lua/neuronbus/agent.lua",
      "^function Handle:fire_to%(")
    local on_spike = "jit_probe.lua:" .. line_of(helpers.fixture("runtime/jit_probe.lua"),
      "^function agent.on_spike%(")
    local traces = {}
    for tr, fns in pairs(ev.recorded) do
      local has = {}
      for key in pairs(fns) do
        for _, want in ipairs({ dispatch, fire_to, on_spike }) do
          if key:sub(-#want) == want then has[want] = true end
        end
      end
      if has[dispatch] and has[fire_to] and has[on_spike] then
        traces[#traces + 1] = tr
      end
    end
    assert.is_true(#traces > 0, "no trace recorded " .. dispatch .. ", "
      .. fire_to .. " and " .. on_spike .. " together")
    -- and such a trace was completed, not aborted
    local stopped = {}
    for _, e in ipairs(ev) do
      if e.what == "stop" then stopped[e.trace] = true end
    end
    local ok = false
    for _, tr in ipairs(traces) do ok = ok or stopped[tr] == true end
    assert.is_true(ok, "the trace recording them did not complete")
  end)

  it("has no NYI abort anywhere in the agent's state", function()
    local nyi = {}
    for _, e in ipairs(ev) do
      if e.what == "abort" and e.reason and e.reason:find("NYI") then
        nyi[#nyi + 1] = e.at .. ": " .. e.reason
      end
    end
    assert.same({}, nyi)
  end)

  it("has no abort at all in the dispatch loop or the handle", function()
    local bad = {}
    for _, e in ipairs(ev) do
      if e.what == "abort" and (in_file(e.at, "neuronbus/agent.lua")
          or in_file(e.at, "neuronbus/ffi.lua")) then
        bad[#bad + 1] = e.at .. ": " .. tostring(e.reason)
      end
    end
    assert.same({}, bad)
  end)
end)
