-- Specs for neuronbus.manifest: one spec per class of error, each asserting
-- the exact key path in the message, and good manifests normalizing.
local manifest = require("neuronbus.manifest")

local FIXTURES = "spec/fixtures/manifests"
local ECHO = manifest.absolute(FIXTURES .. "/agents/echo.lua")

-- The fault isolation keys a neuron with a script carries when it gives
-- none: every default filled in (runtime/nb_rt_defaults.h).
local ISOLATION = {
  memory = 256 * 1024 * 1024, budget_ns = 0, jit = true, watchdog_ns = 1e9, sandbox = false,
  policy = "restart", on_error = "continue",
  restart = { max = 5, window_ns = 60e9, backoff_ns = 100e6, backoff_max_ns = 10e9 },
  keep_max = 1024, keep_warn_ns = 60e9, max_tasks = 1024,
}

-- Returns neuron n with the default isolation keys added.
local function isolated(n)
  for k, v in pairs(ISOLATION) do n[k] = v end
  if n.rewire == nil then n.rewire = false end -- nb:connect: own synapses only
  return n
end

-- Validates t against the fixtures directory.
local function validate(t)
  return manifest.validate(t, FIXTURES)
end

-- Returns a manifest with one neuron "a" (plus extra neurons and keys).
local function with(extra)
  local t = { name = "t", neurons = { a = { script = "agents/echo.lua" } } }
  for k, v in pairs(extra or {}) do
    t[k] = v
  end
  return t
end

-- Asserts that validating t fails with exactly the messages in want.
local function fails_with(t, want)
  local topo, errs = validate(t)
  assert.is_nil(topo)
  assert.same(want, errs)
end

-- Asserts that validating t fails with one message starting with path and
-- containing fragment.
local function fails_at(t, path, fragment)
  local topo, errs = validate(t)
  assert.is_nil(topo)
  assert.equal(1, #errs, "expected one error, got:\n" .. table.concat(errs or {}, "\n"))
  assert.equal(path .. ": ", errs[1]:sub(1, #path + 2), errs[1])
  if fragment then
    assert.matches(fragment, errs[1], 1, true)
  end
end

describe("manifest.load", function()
  it("normalizes a manifest using every key", function()
    local topo, errs = manifest.load(FIXTURES .. "/good.lua")
    assert.is_nil(errs)
    local dir = manifest.absolute(FIXTURES)
    assert.same({
      name = "full",
      tick_ns = 500000,
      arena = { size = 64 * 1024 * 1024, path = dir .. "/arena.bin" },
      axon_capacity = 1024,
      inbox_capacity = 256,
      prune_every = 100,
      workers = 1, placement = "round-robin", pin = false,
      spike_time = "auto",
      neurons = {
        isolated({
          name = "sink", script = ECHO,
          regions = { "demo/output", "demo/audit" },
          capabilities = { "collect" },
          threshold = 1.0, rest = 0.0, leak = 0.95, refractory = 2,
          config = {},
        }),
        isolated({
          name = "source", script = ECHO,
          regions = { "demo/input" }, capabilities = { "produce" },
          threshold = 0, rest = 0, leak = 1, refractory = 0,
          config = { rate = 1000, labels = { "a", "b" }, nested = { deep = true } },
        }),
      },
      synapses = {
        {
          from = "source", to = "sink", weight = 0.5, path = "synapses[1]",
          stdp = {
            a_plus = 0.02, a_minus = 0.012, tau_plus_ms = 10, tau_minus_ms = 30,
            w_min = 0.001, w_max = 0.9,
            mode = "pair", mode_code = 0, lambda = 0.01, alpha = 1, mu_plus = 1, mu_minus = 1,
            tau_c_ms = 1000, tau_n_ms = 200, baseline = 0,
          },
          filters = {
            { type = "kind", kinds = { "excitatory", "modulatory" },
              path = "synapses[1].filters.kind" },
            { type = "priority", min = 3, path = "synapses[1].filters.priority" },
            { type = "prefix", prefix = "req:", path = "synapses[1].filters.prefix" },
            { type = "custom", name = "even", path = "synapses[1].filters.custom" },
          },
        },
        {
          from = "sink", to = "source", weight = 1.0, path = "synapses[2]",
          stdp = {
            a_plus = 0.01, a_minus = 0.012, tau_plus_ms = 20, tau_minus_ms = 20,
            w_min = 0.001, w_max = 1.0,
            mode = "pair", mode_code = 0, lambda = 0.01, alpha = 1, mu_plus = 1, mu_minus = 1,
            tau_c_ms = 1000, tau_n_ms = 200, baseline = 0,
          },
          filters = { { type = "kind", kinds = { "inhibitory" },
                        path = "synapses[2].filters.kind" } },
        },
      },
    }, topo)
  end)

  it("fills every default and names the topology after its file", function()
    local topo, errs = manifest.load(FIXTURES .. "/minimal.lua")
    assert.is_nil(errs)
    assert.same({
      name = "minimal", tick_ns = 1000000,
      arena = { size = 16 * 1024 * 1024 },
      axon_capacity = 4096, inbox_capacity = 4096, prune_every = 0,
      workers = 1, placement = "round-robin", pin = false,
      spike_time = "auto",
      neurons = {
        isolated({
          name = "only", script = ECHO, regions = {}, capabilities = {},
          threshold = 1.0, rest = 0.0, leak = 0.95, refractory = 2, config = {},
        }),
      },
      synapses = {},
    }, topo)
  end)

  it("runs manifest code (loops, string helpers) and reads tick = free", function()
    local topo, errs = manifest.load(FIXTURES .. "/generated.lua")
    assert.is_nil(errs)
    assert.equal(0, topo.tick_ns)
    local names = {}
    for i, n in ipairs(topo.neurons) do
      names[i] = n.name
    end
    assert.same({ "hub", "w1", "w2", "w3" }, names)
    assert.equal(3, #topo.synapses)
    assert.same({ "work" }, topo.neurons[2].capabilities)
  end)

  it("loads the demo manifest of agents/", function()
    local topo, errs = manifest.load("agents/demo.lua")
    assert.is_nil(errs, errs and table.concat(errs, "\n"))
    assert.equal("demo", topo.name)
    assert.is_true(#topo.neurons >= 5)
  end)

  it("loads source text with a label and a base directory", function()
    local topo, errs = manifest.load_source(
      'return { neurons = { a = { script = "echo.lua" } } }',
      "inline", FIXTURES .. "/agents", "inline")
    assert.is_nil(errs)
    assert.equal("inline", topo.name)
    assert.equal(ECHO, topo.neurons[1].script)
    local _, errs2 = manifest.load_source("return {", "inline")
    assert.matches("^inline:1: unexpected symbol near '<eof>'", errs2[1])
  end)

  it("reports a syntax error with the file and line", function()
    local topo, errs = manifest.load(FIXTURES .. "/syntax_error.lua")
    assert.is_nil(topo)
    assert.equal(1, #errs)
    assert.matches("^spec/fixtures/manifests/syntax_error%.lua:5: '}' expected", errs[1])
  end)

  it("reports a runtime error with the file and line", function()
    local _, errs = manifest.load(FIXTURES .. "/runtime_error.lua")
    assert.equal(1, #errs)
    assert.matches("^spec/fixtures/manifests/runtime_error%.lua:4: attempt to index", errs[1])
  end)

  it("runs the manifest without io or os", function()
    local _, errs = manifest.load(FIXTURES .. "/uses_io.lua")
    assert.equal(1, #errs)
    assert.matches("^spec/fixtures/manifests/uses_io%.lua:2: attempt to index global 'io'", errs[1])
  end)

  it("gives an error raised from a library call the manifest's line", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("local x = 1\nreturn { name = string.rep() }\n")
    f:close()
    local _, errs = manifest.load(path)
    os.remove(path)
    assert.equal(1, #errs)
    assert.matches(path .. ":2: bad argument #1 to 'rep'", errs[1], 1, true)
  end)

  it("stops a manifest that never ends", function()
    local _, errs = manifest.load(FIXTURES .. "/endless.lua")
    assert.equal(1, #errs)
    assert.matches("^spec/fixtures/manifests/endless%.lua:2: ran for over %d+ instructions", errs[1])
  end)

  it("refuses a manifest that does not return a table", function()
    local _, errs = manifest.load(FIXTURES .. "/not_a_table.lua")
    assert.same({ FIXTURES .. '/not_a_table.lua: the manifest must return a table, got "demo"' }, errs)
  end)

  it("reports a missing manifest file", function()
    local _, errs = manifest.load(FIXTURES .. "/nope.lua")
    assert.same({ FIXTURES .. "/nope.lua: cannot read the manifest: No such file or directory" }, errs)
  end)

  it("reports a config holding a function, with its path", function()
    local _, errs = manifest.load(FIXTURES .. "/bad_config.lua")
    assert.same({ "neurons.a.config.handler: expected plain data (string, number, "
      .. "boolean or table), got a function" }, errs)
  end)
end)

describe("manifest.validate", function()
  describe("unknown keys", function()
    it("at the top level, listing the allowed keys", function()
      fails_with(with({ ticks = "1ms" }), {
        'ticks: unknown key, did you mean "tick"? (allowed: accept, arena, axon, '
          .. "encrypt, link_limits, listen, max_payload, name, nats, neurons, peers, "
          .. "pin, placement, prune_every, secret, spike_time, "
          .. "synapses, tick, workers)",
      })
    end)

    it("in a neuron", function()
      fails_with(with({ neurons = { parser = { script = "agents/echo.lua", treshold = 1 } } }), {
        'neurons.parser.treshold: unknown key, did you mean "threshold"? (allowed: '
          .. "budget, capabilities, config, description, exec, files, jit, keep_max, keep_warn, leak, "
          .. "max_tasks, memory, on_error, policy, "
          .. "refractory, region, regions, remote, require, rest, restart, rewire, sandbox, "
          .. "script, threshold, watchdog, watchdog_exit, worker)",
      })
    end)

    it("in arena, axon, a synapse, its stdp and its filters", function()
      local t = with({
        arena = { bytes = 1 },
        axon = { slots = 8 },
        neurons = { a = { script = "agents/echo.lua" }, b = { script = "agents/echo.lua" } },
        synapses = { { from = "a", to = "b", delay = 1, stdp = { rate = 1 }, filters = { regex = "x" } } },
      })
      fails_with(t, {
        "arena.bytes: unknown key (allowed: path, size)",
        "axon.slots: unknown key (allowed: capacity, inbox)",
        "synapses[1].delay: unknown key (allowed: filters, from, stdp, to, weight)",
        "synapses[1].stdp.rate: unknown key (allowed: a_minus, a_plus, alpha, baseline, "
          .. "lambda, mode, mu_minus, mu_plus, tau_c, tau_minus, tau_n, tau_plus, w_max, w_min)",
        "synapses[1].filters.regex: unknown key (allowed: custom, kind, prefix, priority)",
      })
    end)
  end)

  describe("messages are one line of valid UTF-8", function()
    -- Returns true when s is well-formed UTF-8 with no control character.
    local function clean_line(s)
      local i = 1
      while i <= #s do
        local c = s:byte(i)
        if c < 0x20 or c == 0x7F then return false end
        local n = c < 0x80 and 1 or c >= 0xF0 and 4 or c >= 0xE0 and 3 or c >= 0xC2 and 2
        if not n or c > 0xF4 then return false end
        for k = i + 1, i + n - 1 do
          local b = s:byte(k)
          if not b or b < 0x80 or b > 0xBF then return false end
        end
        i = i + n
      end
      return true
    end

    it("whatever bytes a key or a value holds (escaped as \\ddd)", function()
      local t = with({ ["\255\n"] = 1, tick = "1\n\128ms", name = "caf\195\169\r" })
      t.neurons.a.description = "two\nlines"
      local topo, errs = validate(t)
      assert.is_nil(topo)
      assert.same({
        '["\\255\\010"]: unknown key (allowed: accept, arena, axon, encrypt, '
          .. "link_limits, listen, max_payload, name, nats, neurons, peers, pin, "
          .. "placement, prune_every, secret, spike_time, synapses, tick, workers)",
        'name: bad name "caf\195\169\\013": use letters, digits, _, - and . only',
        'tick: expected "free" or a duration like "500us", "20ms" or "1.5s" (units ns, us, ms, '
          .. 's, m), got "1\\010\\128ms"',
        "neurons.a.description: one line of text expected, got a control character (a newline?)",
      }, errs)
      for _, e in ipairs(errs) do
        assert.is_true(clean_line(e), e)
      end
    end)

    it("for a manifest's syntax error and its own error()", function()
      local _, errs = manifest.load_source("return { a \255\254 }", "m.lua")
      assert.same({ "m.lua:1: '}' expected near '\\255\\254'" }, errs)
      _, errs = manifest.load_source('error("bad\\n\\255")', "m.lua")
      assert.same({ "m.lua:1: bad\\010\\255" }, errs)
    end)
  end)

  describe("wrong types", function()
    it("names the path, the expected type and the value", function()
      fails_with(with({ neurons = { parser = { script = "agents/echo.lua", threshold = "high" } } }),
        { 'neurons.parser.threshold: expected a number, got "high"' })
    end)

    it("for tables, names and lists", function()
      fails_with(with({ arena = "big", axon = 4096, synapses = "a->b" }), {
        'arena: expected a table, got "big"',
        "axon: expected a table, got 4096",
        'synapses: expected a list of synapses, got "a->b"',
      })
      fails_with({ name = "t", neurons = { a = "agents/echo.lua" } },
        { 'neurons.a: expected a table, got "agents/echo.lua"' })
      fails_with({ name = "t", neurons = { a = { script = "agents/echo.lua", config = 3 } } },
        { "neurons.a.config: expected a table, got 3" })
    end)

    it("in capabilities and regions", function()
      fails_with(with({ neurons = { a = { script = "agents/echo.lua",
          capabilities = { "work", 3 }, regions = { "x//y" } } } }), {
        'neurons.a.regions[1]: bad region "x//y": use letters, digits, _ - . : and single /',
        "neurons.a.capabilities[2]: expected a capability, got 3",
      })
    end)

    it("for the whole manifest", function()
      fails_with("demo", { 'manifest: expected a table (the manifest), got "demo"' })
    end)
  end)

  describe("names", function()
    it("refuses a bad neuron name", function()
      fails_at({ name = "t", neurons = { ["my neuron"] = { script = "agents/echo.lua" } } },
        "neurons.my neuron", 'bad name "my neuron"')
    end)

    it("refuses neurons given as a list", function()
      fails_at({ name = "t", neurons = { { script = "agents/echo.lua" } } },
        "neurons[1]", "neurons is a map of name = { script = ... }")
    end)

    it("refuses a bad or missing topology name", function()
      fails_at(with({ name = "" }), "name", 'bad name ""')
      local t = with()
      t.name = nil
      fails_at(t, "name", "missing")
    end)

    it("refuses an empty topology", function()
      fails_at({ name = "t", neurons = {} }, "neurons", "at least one neuron")
      fails_at({ name = "t" }, "neurons", "missing (a map of name = { script = ... })")
    end)

    it("refuses a duplicate capability", function()
      fails_at(with({ neurons = { a = { script = "agents/echo.lua", capabilities = { "w", "w" } } } }),
        "neurons.a.capabilities[2]", 'duplicate capability "w"')
    end)

    it("refuses region together with regions", function()
      fails_at(with({ neurons = { a = { script = "agents/echo.lua", region = "x", regions = { "y" } } } }),
        "neurons.a.regions", "give region or regions, not both")
    end)
  end)

  describe("synapses", function()
    local function two(syn)
      return with({
        neurons = { producer = { script = "agents/echo.lua" }, router = { script = "agents/echo.lua" } },
        synapses = syn,
      })
    end

    it("report an unknown neuron in from or to", function()
      fails_with(two({ { from = "producer", to = "ruoter" }, { from = "nobody", to = "router" } }), {
        'synapses[1].to: unknown neuron "ruoter", did you mean "router"? (neurons: producer, router)',
        'synapses[2].from: unknown neuron "nobody" (neurons: producer, router)',
      })
    end)

    it("report a missing end", function()
      fails_at(two({ { from = "producer" } }), "synapses[1].to", "missing")
    end)

    it("report a pair given twice", function()
      fails_with(two({
        { from = "producer", to = "router" },
        { from = "router", to = "producer" },
        { from = "producer", to = "router", weight = 0.5 },
      }), { "synapses[3]: duplicate synapse producer -> router (first given as synapses[1])" })
    end)

    it("report a synapse from a neuron to itself", function()
      fails_at(two({ { from = "router", to = "router" } }), "synapses[1].to",
        'a synapse cannot join "router" to itself')
    end)

    it("report keyed entries", function()
      fails_at(two({ main = { from = "producer", to = "router" } }), "synapses.main",
        "synapses is a list")
    end)

    it("report a bad stdp value", function()
      fails_at(two({ { from = "producer", to = "router", stdp = "on" } }), "synapses[1].stdp",
        'expected true, false, "pair", "trace", "reward" or a table of STDP parameters, got "on"')
    end)

    it("take a learning mode by name, with its defaults", function()
      local topo = assert(validate(two({ { from = "producer", to = "router", stdp = "reward" } })))
      local st = topo.synapses[1].stdp
      assert.equal("reward", st.mode)
      assert.equal(2, st.mode_code)
      assert.equal(1000, st.tau_c_ms)
      assert.equal(200, st.tau_n_ms)
      topo = assert(validate(two({ { from = "producer", to = "router",
        stdp = { mode = "trace", lambda = 0.02, mu_plus = 0, tau_c = "2s" } } })))
      st = topo.synapses[1].stdp
      assert.same({ "trace", 1, 0.02, 0, 2000 }, { st.mode, st.mode_code, st.lambda, st.mu_plus, st.tau_c_ms })
    end)

    it("report a bad spike_time", function()
      fails_at(with({ spike_time = "tock" }), "spike_time",
        'expected "auto" or "fire" or "tick", got "tock"')
      for _, v in ipairs({ "auto", "fire", "tick" }) do
        local topo = assert(manifest.validate(with({ spike_time = v }), FIXTURES))
        assert.equal(v, topo.spike_time)
      end
    end)

    it("report a bad learning mode or parameter", function()
      fails_at(two({ { from = "producer", to = "router", stdp = { mode = "rewards" } } }),
        "synapses[1].stdp.mode", 'expected "pair" or "trace" or "reward", got "rewards" (did you mean "reward"?)')
      fails_at(two({ { from = "producer", to = "router", stdp = { mode = "reward", tau_n = 5 } } }),
        "synapses[1].stdp.tau_n", "unit")
      fails_at(two({ { from = "producer", to = "router", stdp = { mode = "trace", lambda = -1 } } }),
        "synapses[1].stdp.lambda", "-1 is out of range")
    end)

    it("report w_min not below w_max", function()
      fails_at(two({ { from = "producer", to = "router", stdp = { w_min = 0.5, w_max = 0.4 } } }),
        "synapses[1].stdp.w_min", "0.5 must be below w_max 0.4")
    end)

    it("report an unknown kind in a filter list", function()
      fails_at(two({ { from = "producer", to = "router",
          filters = { kind = { "excitatory", "inhibtory" } } } }),
        "synapses[1].filters.kind[2]", 'unknown kind "inhibtory", did you mean "inhibitory"?')
    end)

    it("report a bad custom filter name", function()
      fails_at(two({ { from = "producer", to = "router", filters = { custom = ("x"):rep(32) } } }),
        "synapses[1].filters.custom", "is 32 bytes, at most 31 are allowed")
    end)
  end)

  describe("missing scripts", function()
    it("report the resolved path", function()
      local dir = manifest.absolute(FIXTURES)
      fails_with({ name = "t", neurons = { a = { script = "agents/nope.lua" }, b = {} } }, {
        "neurons.a.script: cannot read script " .. dir
          .. "/agents/nope.lua: No such file or directory",
        "neurons.b.script: missing (the agent's Lua file, relative to the manifest)",
      })
    end)

    it("report a directory given as a script", function()
      fails_at({ name = "t", neurons = { a = { script = "agents" } } }, "neurons.a.script",
        "agents: Is a directory")
    end)

    it("accept an absolute path", function()
      local topo = validate({ name = "t", neurons = { a = { script = ECHO } } })
      assert.equal(ECHO, topo.neurons[1].script)
    end)
  end)

  describe("units", function()
    it("report a bad tick", function()
      fails_at(with({ tick = "fast" }), "tick",
        'expected "free" or a duration like "500us", "20ms" or "1.5s"')
      fails_at(with({ tick = "20" }), "tick", 'got "20" (missing unit)')
      fails_at(with({ tick = 0 }), "tick", 'use "free" for a free-running cortex')
    end)

    it("report a bad arena size", function()
      fails_at(with({ arena = { size = "64 parsecs" } }), "arena.size",
        'got "64 parsecs" (unknown unit "parsecs")')
      fails_at(with({ arena = { size = 0 } }), "arena.size", "above zero")
    end)

    it("report a bad stdp time constant", function()
      fails_at(with({
        neurons = { a = { script = "agents/echo.lua" }, b = { script = "agents/echo.lua" } },
        synapses = { { from = "a", to = "b", stdp = { tau_minus = "20 msec" } } },
      }), "synapses[1].stdp.tau_minus", 'unknown unit "msec"')
    end)

    it("refuse a bare number, asking for a unit", function()
      fails_at(with({ tick = 0.002 }), "tick",
        'expected "free" or a duration with a unit, got 0.002 (write "0.002ms" or "0.002s")')
      fails_at(with({
        neurons = { a = { script = "agents/echo.lua" }, b = { script = "agents/echo.lua" } },
        synapses = { { from = "a", to = "b", stdp = { tau_plus = 20 } } },
      }), "synapses[1].stdp.tau_plus",
        'expected a duration with a unit, got 20 (write "20ms" or "20s")')
      fails_with(with({ neurons = { a = { script = "agents/echo.lua", budget = 10,
          watchdog = 2, restart = { window = 60, backoff = 1, backoff_max = "1s" } } } }), {
        'neurons.a.budget: expected a duration with a unit, got 10 (write "10ms" or "10s")',
        'neurons.a.watchdog: expected a duration with a unit, got 2 (write "2ms" or "2s")',
        'neurons.a.restart.window: expected a duration with a unit, got 60 (write "60ms" or "60s")',
        'neurons.a.restart.backoff: expected a duration with a unit, got 1 (write "1ms" or "1s")',
      })
      fails_at(with({ peers = { { url = "tcp://127.0.0.1:9", backoff = { 0.05, "5s" } } } }),
        "peers[1].backoff[1]", 'expected a duration with a unit, got 0.05 (write "0.05ms" or "0.05s")')
    end)
  end)

  describe("ranges", function()
    local function neuron(fields)
      fields.script = "agents/echo.lua"
      return with({ neurons = { n = fields } })
    end

    it("leak in [0, 1]", function()
      fails_with(neuron({ leak = 1.5 }),
        { "neurons.n.leak: 1.5 is out of range, expected a number in [0, 1]" })
    end)

    it("refractory a non-negative integer", function()
      fails_at(neuron({ refractory = -1 }), "neurons.n.refractory", "expected an integer from 0")
      fails_at(neuron({ refractory = 1.5 }), "neurons.n.refractory", "expected an integer, got 1.5")
    end)

    it("threshold finite", function()
      fails_at(neuron({ threshold = 1 / 0 }), "neurons.n.threshold", "expected a finite number")
    end)

    it("weight in (0, 1]", function()
      local t = with({
        neurons = { a = { script = "agents/echo.lua" }, b = { script = "agents/echo.lua" } },
        synapses = { { from = "a", to = "b", weight = 0 }, { from = "b", to = "a", weight = 1.01 } },
      })
      fails_with(t, {
        "synapses[1].weight: 0 is out of range, expected a number in (0, 1]",
        "synapses[2].weight: 1.01 is out of range, expected a number in (0, 1]",
      })
    end)

    it("priority 0..255 and prefix up to 16 bytes", function()
      local t = with({
        neurons = { a = { script = "agents/echo.lua" }, b = { script = "agents/echo.lua" } },
        synapses = { { from = "a", to = "b", filters = { priority = 256, prefix = "a-very-long-prefix" } } },
      })
      fails_with(t, {
        "synapses[1].filters.priority: 256 is out of range, expected an integer from 0 to 255",
        'synapses[1].filters.prefix: "a-very-long-prefix" is 18 bytes, expected 1 to 16',
      })
    end)

    it("axon capacity a power of two >= 2", function()
      fails_at(with({ axon = { capacity = 1000 } }), "axon.capacity", "1000 is not a power of two")
      fails_at(with({ axon = { capacity = 1 } }), "axon.capacity", "expected an integer from 2")
      fails_at(with({ axon = { inbox = 0 } }), "axon.inbox", "expected an integer from 1")
    end)

    it("prune_every a non-negative integer", function()
      fails_at(with({ prune_every = -5 }), "prune_every", "expected an integer from 0")
    end)

    it("inbox defaults to the axon capacity", function()
      local topo = validate(with({ axon = { capacity = 64 } }))
      assert.equal(64, topo.axon_capacity)
      assert.equal(64, topo.inbox_capacity)
    end)
  end)

  describe("config", function()
    local function config(c)
      return with({ neurons = { a = { script = "agents/echo.lua", config = c } } })
    end

    it("refuses a function, naming its path", function()
      fails_with(config({ list = { 1, 2, print } }), {
        "neurons.a.config.list[3]: expected plain data (string, number, boolean or table), got a function",
      })
    end)

    it("refuses a cycle", function()
      local c = { inner = {} }
      c.inner.back = c
      fails_at(config(c), "neurons.a.config.inner.back", "a cycle")
    end)

    it("refuses metatables, coroutines and table keys", function()
      fails_with(config({ m = setmetatable({}, {}), co = coroutine.create(print), [{}] = 1 }), {
        "neurons.a.config.co: expected plain data (string, number, boolean or table), got a thread",
        "neurons.a.config.m: expected plain data, got a table with a metatable",
        "neurons.a.config[a table]: expected a string or number key, got a table",
      })
    end)

    it("is copied, sharing allowed", function()
      local shared = { x = 1 }
      local c = { a = shared, b = shared }
      local topo = validate(config(c))
      local got = topo.neurons[1].config
      assert.same(c, got)
      assert.are_not.equal(c, got)
      assert.are_not.equal(shared, got.a)
    end)
  end)

  describe("description", function()
    local function described(d)
      return with({ neurons = { a = { script = "agents/echo.lua", description = d } } })
    end

    it("is copied into the normalized neuron", function()
      local topo = validate(described("parses requests; \"quotes\" and UTF-8 (é) are fine"))
      assert.equal('parses requests; "quotes" and UTF-8 (é) are fine', topo.neurons[1].description)
      assert.is_nil(validate(with()).neurons[1].description)
    end)

    it("is one line of free text of at most 256 bytes", function()
      assert.equal(256, #validate(described(("x"):rep(256))).neurons[1].description)
      fails_at(described(("x"):rep(257)), "neurons.a.description", "257 bytes, at most 256 are allowed")
      fails_at(described("a\0b"), "neurons.a.description", "one line of text expected, got a control character")
      fails_at(described("two\nlines"), "neurons.a.description", "one line of text expected")
      fails_at(described(42), "neurons.a.description", "expected a string (free text), got 42")
    end)
  end)

  describe("isolation defaults", function()
    it("are filled in for a neuron with a script; a budget turns the JIT off", function()
      local topo = validate(with({ neurons = {
        a = { script = "agents/echo.lua", budget = "20ms", restart = { max = 2 } },
        b = { script = "agents/echo.lua", watchdog = false, policy = "stop" },
      } }))
      local a, b = topo.neurons[1], topo.neurons[2]
      assert.equal(20e6, a.budget_ns)
      assert.is_false(a.jit)
      assert.same({ max = 2, window_ns = 60e9, backoff_ns = 100e6, backoff_max_ns = 10e9 }, a.restart)
      assert.is_true(b.jit)
      assert.is_false(b.watchdog_ns)
      assert.equal("stop", b.policy)
      assert.same(ISOLATION.restart, b.restart)
      assert.are_not.equal(a.restart, b.restart)
    end)

    it("are not given to a remote neuron", function()
      local topo = validate(with({ neurons = { r = { remote = "peer://far/r" } } }))
      local r = topo.neurons[1]
      assert.is_nil(r.memory)
      assert.is_nil(r.policy)
      assert.is_nil(r.restart)
      assert.equal(1.0, r.threshold)
      assert.same({}, r.config)
    end)

    it("bound restart.max by what the runtime keeps track of", function()
      fails_at(with({ neurons = { a = { script = "agents/echo.lua", restart = { max = 10001 } } } }),
        "neurons.a.restart.max", "10001 is out of range, expected an integer from 0 to 10000")
    end)
  end)

  describe("recorders (opts.recorders, opts.injector)", function()
    it("are added in name order, the injector last", function()
      local topo = manifest.validate(with({
        neurons = { m = { script = "agents/echo.lua" } },
        synapses = { { from = "test", to = "m" }, { from = "m", to = "b" } },
      }), FIXTURES, { recorders = { "z", "b" }, injector = "test" })
      local names = {}
      for i, n in ipairs(topo.neurons) do names[i] = n.name end
      assert.same({ "b", "m", "z", "test" }, names)
      assert.same({ name = "b", recorder = true, regions = {}, capabilities = {} }, topo.neurons[1])
      assert.same({ name = "test", recorder = true, regions = {}, capabilities = {} }, topo.neurons[4])
    end)

    it("leave the injector out when a neuron has its name", function()
      local topo = manifest.validate({ name = "t", neurons = { test = { script = "agents/echo.lua" } } },
        FIXTURES, { injector = "test" })
      assert.equal(1, #topo.neurons)
      assert.is_nil(topo.neurons[1].recorder)
    end)

    it("refuse a name a neuron has, or given twice", function()
      local _, errs = manifest.validate(with(), FIXTURES, { recorders = { "a", "x", "x", "bad name" } })
      assert.same({
        'recorders[1]: "a" is a neuron of the manifest (neurons.a), it cannot also be a recorder',
        'recorders[3]: "x" is named twice (first as recorders[2])',
        'recorders[4]: bad name "bad name": use letters, digits, _, - and . only',
      }, errs)
    end)
  end)

  it("loads without the runtime library or the FFI", function()
    local out, status = require("helpers").sh("luajit -e '"
      .. [[package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
        local m = require("neuronbus.manifest")
        assert(m.load("spec/fixtures/manifests/good.lua"))
        assert(not package.loaded.ffi and not package.loaded["neuronbus.ffi"], "ffi loaded")
        print("ok")]] .. "'")
    assert.equal(0, status, out)
    assert.equal("ok\n", out)
  end)

  it("collects every problem, not just the first", function()
    local _, errs = validate({
      name = "t", tick = "x", prune_every = "never",
      neurons = { a = { script = "agents/echo.lua", leak = 7, threshold = "high" } },
      synapses = { { from = "a", to = "zz" } },
    })
    assert.equal(5, #errs)
  end)
end)
