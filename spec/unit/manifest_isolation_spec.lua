-- The manifest's isolation keys (neuronbus.isolation): each problem
-- reported with its key path, and a neuron using every key accepted.
local manifest = require("neuronbus.manifest")

local FX = manifest.absolute("spec/fixtures/isolation") .. "/"

describe("the isolation keys", function()
  -- Returns the problems manifest.validate finds in neuron keys t.
  local function problems(t)
    t.script = FX .. "bomb.lua"
    local topo, errs = manifest.validate({ name = "m", neurons = { n = t } })
    return topo and {} or errs
  end

  it("refuses a budget with an explicit jit = true, naming both keys", function()
    local e = problems({ budget = "20ms", jit = true })
    assert.equal(1, #e)
    assert.matches("^neurons%.n%.budget: a budget needs jit = false, but neurons%.n%.jit is true", e[1])
  end)

  it("checks every key with its path", function()
    assert.matches("neurons.n.memory: \"100KB\" is below the minimum of 256KB", problems({ memory = "100KB" })[1], 1, true)
    assert.matches("neurons.n.memory: expected a size", problems({ memory = "lots" })[1], 1, true)
    assert.matches('neurons.n.memory: expected a size like "64MB", or false for no cap (the default is 256MB), got true',
      problems({ memory = true })[1], 1, true)
    assert.same({}, problems({ memory = false }))
    assert.matches("neurons.n.policy: expected \"restart\" or \"stop\", got \"restrat\" (did you mean \"restart\"?)",
      problems({ policy = "restrat" })[1], 1, true)
    assert.matches("neurons.n.on_error: expected \"continue\" or \"policy\"", problems({ on_error = "ignore" })[1], 1, true)
    assert.matches("neurons.n.jit: expected true or false", problems({ jit = "off" })[1], 1, true)
    assert.matches("neurons.n.sandbox: expected true or false", problems({ sandbox = 1 })[1], 1, true)
    assert.matches("neurons.n.watchdog: expected a duration", problems({ watchdog = true })[1], 1, true)
    assert.matches("neurons.n.require: only used with sandbox = true", problems({ require = { "x" } })[1], 1, true)
    assert.matches("neurons.n.restart.backoff_max: \"1ms\" is below backoff \"10ms\"",
      problems({ restart = { backoff = "10ms", backoff_max = "1ms" } })[1], 1, true)
    assert.matches("neurons.n.restart.maxx: unknown key, did you mean \"max\"?",
      problems({ restart = { maxx = 1 } })[1], 1, true)
    assert.matches("neurons.n.restart: only used with policy = \"restart\"",
      problems({ policy = "stop", restart = {} })[1], 1, true)
    assert.matches("neurons.n.keep_max: -1 is out of range, expected an integer from 0 to 1048576",
      problems({ keep_max = -1 })[1], 1, true)
    assert.matches("neurons.n.keep_max: ", problems({ keep_max = 1.5 })[1], 1, true)
    assert.matches("neurons.n.keep_warn: ", problems({ keep_warn = 5 })[1], 1, true)
    assert.matches("neurons.n.keep_warn: ", problems({ keep_warn = true })[1], 1, true)
    assert.same({}, problems({ keep_max = 0, keep_warn = false }))
    assert.same({}, problems({ keep_max = 1048576, keep_warn = "250ms" }))
    assert.same({}, problems({ memory = "16MB", budget = "20ms", jit = false, sandbox = true,
      policy = "restart", restart = { max = 5, window = "10s", backoff = "100ms", backoff_max = "5s" },
      watchdog = false, require = nil, on_error = "policy" }))
  end)

  it("takes watchdog_exit, a duration at least the watchdog; absent or false: never", function()
    assert.matches("neurons.n.watchdog_exit: \"500ms\" is below the watchdog (1s)",
      problems({ watchdog_exit = "500ms" })[1], 1, true)
    assert.matches("neurons.n.watchdog_exit: \"150ms\" is below the watchdog (200ms)",
      problems({ watchdog = "200ms", watchdog_exit = "150ms" })[1], 1, true)
    assert.matches("neurons.n.watchdog_exit: exiting when an entry is stuck needs the watchdog, "
      .. "but neurons.n.watchdog is false", problems({ watchdog = false, watchdog_exit = "5s" })[1], 1, true)
    assert.matches("neurons.n.watchdog_exit: expected a duration with a unit, got 30",
      problems({ watchdog_exit = 30 })[1], 1, true)
    assert.matches("neurons.n.watchdog_exit: expected a duration", problems({ watchdog_exit = "soon" })[1], 1, true)
    local topo = manifest.validate({ name = "m", neurons = {
      a = { script = FX .. "bomb.lua", watchdog_exit = "30s" },
      b = { script = FX .. "bomb.lua", watchdog = "100ms", watchdog_exit = "100ms" },
      c = { script = FX .. "bomb.lua", watchdog_exit = false },
      d = { script = FX .. "bomb.lua" } } })
    assert.equal(30e9, topo.neurons[1].watchdog_exit_ns)
    assert.equal(100e6, topo.neurons[2].watchdog_exit_ns)
    assert.is_nil(topo.neurons[3].watchdog_exit_ns)
    assert.is_nil(topo.neurons[4].watchdog_exit_ns) -- the default: never exit
  end)

  it("normalizes the payload keys: keep_warn in ns, false as 0", function()
    local topo = manifest.validate({ name = "m", neurons = {
      a = { script = FX .. "bomb.lua", keep_max = 7, keep_warn = "250ms" },
      b = { script = FX .. "bomb.lua", keep_warn = false } } })
    assert.equal(7, topo.neurons[1].keep_max)
    assert.equal(250e6, topo.neurons[1].keep_warn_ns)
    assert.equal(1024, topo.neurons[2].keep_max)
    assert.equal(0, topo.neurons[2].keep_warn_ns)
  end)

  it("caps memory at 256 MB by default; memory = false is no cap (0)", function()
    local topo = manifest.validate({ name = "m", neurons = {
      a = { script = FX .. "bomb.lua" },
      b = { script = FX .. "bomb.lua", memory = false },
      c = { script = FX .. "bomb.lua", memory = "1GB" } } })
    assert.equal(256 * 1024 * 1024, topo.neurons[1].memory)
    assert.equal(0, topo.neurons[2].memory)
    assert.equal(1024 ^ 3, topo.neurons[3].memory)
  end)
end)
