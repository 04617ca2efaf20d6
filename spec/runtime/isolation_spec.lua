-- Fault isolation: memory caps, budgets with jit = false, the
-- restart and stop policies, dead letters, the watchdog and the
-- sandbox, through the harness and the real runtime. In every case a
-- bystander pair (beat -> tally, 2,000 numbered spikes) runs beside the
-- faulty neuron and must lose nothing, and what the faulty neuron was sent
-- is counted where it arrives (the recorder "out").
local testing = require("neuronbus.testing")
local serial = require("neuronbus.serial")
local manifest = require("neuronbus.manifest")
local helpers = require("helpers")

local FX = manifest.absolute("spec/fixtures/isolation") .. "/"
local MB = 1024 * 1024
local BEATS = 2000 -- beat sends 10 per tick

local now_ms, sleep_ms = helpers.now_ms, helpers.sleep_ms

-- Returns a harness over a topology with the neuron "victim" (the table
-- given: its script name in spec/fixtures/isolation and its keys) and the
-- bystander pair; recorders "out" and "log" take what the victim sends.
local function run(victim)
  victim.script = FX .. victim.script
  victim.refractory = victim.refractory or 0
  local topo = {
    name = "isolation", tick = "free",
    neurons = {
      victim = victim,
      beat = { script = FX .. "beat.lua", threshold = 0, refractory = 0,
               config = { to = "tally", n = BEATS, batch = 10 } },
      tally = { script = FX .. "count.lua", refractory = 0 },
    },
  }
  local path = os.tmpname()
  helpers.write(path, serial.dump(topo))
  local ok, h = pcall(testing.manifest, path, { quiet = true, peers = { "out", "log" } })
  os.remove(path)
  if not ok then error(h, 2) end
  return h
end

-- Ticks (sleeping a little between) until neuron who is in state, at most
-- max_ms of wall time; returns the ms it took.
local function wait_state(h, who, state, max_ms)
  local t0 = now_ms()
  while h:stats(who).state ~= state do
    if now_ms() - t0 > (max_ms or 10000) then
      error(who .. " never reached state " .. state .. " (it is "
        .. h:stats(who).state .. ")", 2)
    end
    h:tick(1)
    sleep_ms(1)
  end
  return now_ms() - t0
end

-- Asserts the bystander lost nothing: every beat arrived, once, in order.
local function assert_bystander(h)
  h:tick(BEATS / 10 + 50)
  assert.equal(BEATS, h:state("beat").sent)
  local t = h:state("tally")
  assert.equal(BEATS, t.got)
  assert.equal(0, t.bad)
  assert.equal(0, h:stats("tally").errors)
  assert.equal("running", h:stats("tally").state)
end

local function payloads(h, who) return helpers.payloads(h:received(who)) end

describe("a memory cap (memory = \"16MB\")", function()
  for _, shape in ipairs({ "table", "concat", "rep", "closures", "coroutines", "ffi" }) do
    it("turns a bomb by " .. shape .. " into a memory error of that neuron, the host survives, "
      .. "the restart policy applies and the rest of the batch is delivered after it", function()
      local h = run({ script = "bomb.lua", memory = "16MB",
                      restart = { backoff = "10ms" }, config = { to = "out", log = "log" } })
      h:inject("victim", "a")
      h:inject("victim", shape)
      h:inject("victim", "b")
      h:tick(1)
      local st = h:stats("victim")
      assert.equal(1, st.faults)
      assert.equal(1, st.mem_errors)
      assert.equal("backoff", st.state)
      assert.equal(16 * MB, st.memory_limit)
      assert.is_true(st.memory_peak <= 16 * MB + 64 * 1024, "peak " .. st.memory_peak)
      local errs = h:errors("victim")
      assert.equal(1, #errs)
      assert.matches("^on_spike: memory limit 16 MB exceeded", errs[1])
      wait_state(h, "victim", "running")
      st = h:stats("victim")
      assert.equal(1, st.restarts)
      assert.is_true(st.memory < 4 * MB, "a fresh state: " .. st.memory)
      assert.same({ "a", "b" }, payloads(h, "out"))   -- b waited for the restart
      assert.same({ "init", "init" }, payloads(h, "log")) -- init ran again
      h:inject("victim", "c")
      h:tick(2)
      assert.same({ "a", "b", "c" }, payloads(h, "out"))
      assert_bystander(h)
      h:close()
    end)
  end

  it("stops a neuron whose live data fills the cap when its policy is stop; its spikes become dead letters", function()
    local h = run({ script = "bomb.lua", memory = "4MB", policy = "stop",
                    config = { to = "out" } })
    h:inject("victim", "keep")
    h:inject("victim", "x")
    h:inject("victim", "y")
    h:tick(1)
    local st = h:stats("victim")
    assert.equal("stopped", st.state)
    assert.equal(2, st.dead_letters) -- the rest of the batch, counted
    for i = 1, 10 do h:inject("victim", tostring(i)) end
    h:tick(3)
    st = h:stats("victim")
    assert.equal(12, st.dead_letters)
    assert.equal(0, st.memory) -- the state was closed
    assert.same({}, payloads(h, "out"))
    assert_bystander(h)
    h:close()
  end)
end)

describe("a budget (budget = \"20ms\", jit = false)", function()
  local SHAPES = { "while", "for", "repeat", "goto", "tail", "cfunc", "pcall",
                   "xpcall", "coroutine", "gsub", "sort" }
  for _, shape in ipairs(SHAPES) do
    it("interrupts the loop shape " .. shape .. " and applies the policy", function()
      local h = run({ script = "spin.lua", budget = "20ms", jit = false,
                      restart = { backoff = "10ms" }, config = { to = "out" } })
      assert.is_false(h:stats("victim").jit)
      h:inject("victim", "a")
      h:inject("victim", shape)
      h:inject("victim", "b")
      local t0 = now_ms()
      h:tick(1)
      local took = now_ms() - t0
      -- 20 ms of budget; the rest is a loaded machine (see the README)
      assert.is_true(took < 5000, "the tick took " .. took .. " ms")
      local st = h:stats("victim")
      assert.equal(1, st.budget_overruns)
      assert.equal("backoff", st.state)
      -- (coroutine.wrap adds the position when it passes the error on)
      assert.matches("^on_spike: [^\n]*budget of 20 ms exceeded", h:errors("victim")[1])
      wait_state(h, "victim", "running")
      assert.same({ "a", "b" }, payloads(h, "out"))
      assert_bystander(h)
      h:close()
    end)
  end

  it("is the agent's only: the runtime's own Lua side loads outside it, so a 1 ms budget boots and restarts", function()
    -- Loading neuronbus.agent (its FFI declarations, interpreted) can take
    -- longer than a small budget on a loaded machine: it is host work.
    local h = run({ script = "spin.lua", budget = "1ms",
                    restart = { backoff = "10ms" }, config = { to = "out" } })
    h:inject("victim", "a")
    h:inject("victim", "while")
    h:inject("victim", "b")
    h:tick(1)
    assert.equal(1, h:stats("victim").budget_overruns)
    wait_state(h, "victim", "running")
    assert.equal(1, h:stats("victim").restarts)
    assert.same({ "a", "b" }, payloads(h, "out"))
    assert_bystander(h)
    h:close()
  end)

  it("is per entry: a batch that stays within it is untouched", function()
    local h = run({ script = "spin.lua", budget = "20ms", config = { to = "out" } })
    for i = 1, 500 do h:inject("victim", tostring(i)) end
    h:tick(2)
    assert.equal(500, #h:received("out"))
    assert.equal(0, h:stats("victim").budget_overruns)
    assert.is_false(h:stats("victim").jit) -- a budget turns the JIT off
    h:close()
  end)
end)

describe("the restart policy", function()
  it("backs off exponentially, keeps every queued spike, and stops after restart.max within the window", function()
    local h = run({ script = "bomb.lua", on_error = "policy",
                    restart = { max = 3, window = "60s", backoff = "30ms", backoff_max = "70ms" },
                    config = { to = "out", log = "log" } })
    local sent, waits = 0, {}
    local function send(n)
      for _ = 1, n do
        sent = sent + 1
        h:inject("victim", tostring(sent))
      end
    end
    for round = 1, 3 do
      send(20)
      h:inject("victim", "boom")
      send(20) -- the rest of the batch: kept for the restarted state
      h:tick(1)
      local st = h:stats("victim")
      assert.equal("backoff", st.state)
      assert.equal(round, st.faults)
      send(30) -- queued while it waits: held in its inbox, not lost
      h:tick(1)
      assert.equal("backoff", h:stats("victim").state)
      waits[round] = wait_state(h, "victim", "running")
      assert.equal(round, h:stats("victim").restarts)
    end
    -- 30, 60, then 70 ms (capped at backoff_max): the waits grow
    assert.is_true(waits[1] >= 29, "first backoff " .. waits[1])
    assert.is_true(waits[2] >= 59, "second backoff " .. waits[2])
    assert.is_true(waits[3] >= 69, "third backoff " .. waits[3])
    assert.equal(70e6, h:stats("victim").next_backoff_ns)
    h:tick(2)
    -- every numbered spike arrived, once, in order; only the booms are gone
    local got = payloads(h, "out")
    assert.equal(sent, #got)
    for i = 1, sent do assert.equal(tostring(i), got[i]) end
    assert.equal(4, #h:received("log")) -- init at boot and after each restart
    -- a fourth fault within the window: more than restart.max, stopped
    h:inject("victim", "boom")
    h:inject("victim", "late")
    h:tick(1)
    local st = h:stats("victim")
    assert.equal("stopped", st.state)
    assert.equal(3, st.restarts)
    assert.equal(1, st.dead_letters)
    assert_bystander(h)
    h:close()
  end)

  it("holds a waiting neuron's spikes in its inbox, then in the axon upstream: the producer is slowed, nothing is lost", function()
    local topo = {
      name = "backpressure", tick = "free", axon = { capacity = 16, inbox = 8 },
      neurons = {
        victim = { script = FX .. "bomb.lua", refractory = 0, on_error = "policy",
                   restart = { backoff = "50ms" }, config = { to = "out" } },
        beat = { script = FX .. "beat.lua", threshold = 0, refractory = 0,
                 config = { to = "victim", n = 500, batch = 10 } },
      },
    }
    local path = os.tmpname()
    helpers.write(path, serial.dump(topo))
    local h = testing.manifest(path, { quiet = true, peers = { "out" } })
    os.remove(path)
    h:inject("victim", "boom")
    h:tick(1)
    assert.equal("backoff", h:stats("victim").state)
    h:tick(50) -- far more than the inbox and the axon hold
    assert.is_true(h:stats("beat").full > 0, "the producer met a full axon")
    assert.is_true(h:state("beat").sent < 500)
    wait_state(h, "victim", "running")
    for _ = 1, 200 do
      if #h:received("out") >= 500 then break end
      h:tick(1)
    end
    local got = payloads(h, "out")
    assert.equal(500, #got)
    for i = 1, 500 do assert.equal(tostring(i), got[i]) end
    assert.equal(0, h:stats("victim").dead_letters)
    h:close()
  end)

  it("gives init the manifest's config again", function()
    local h = run({ script = "bomb.lua", memory = "8MB", restart = { backoff = "5ms" },
                    config = { to = "out", log = "log" } })
    h:inject("victim", "table")
    h:tick(1)
    wait_state(h, "victim", "running")
    h:inject("victim", "after")
    h:tick(2)
    -- bomb's init reads config.to and config.log: both made it
    assert.same({ "after" }, payloads(h, "out"))
    assert.same({ "init", "init" }, payloads(h, "log"))
    h:close()
  end)

  it("leaves an ordinary error alone by default (on_error = \"continue\"): counted, next spike", function()
    local h = run({ script = "bomb.lua", config = { to = "out" } })
    h:inject("victim", "a")
    h:inject("victim", "boom")
    h:inject("victim", "b")
    h:tick(2)
    local st = h:stats("victim")
    assert.equal("running", st.state)
    assert.equal(0, st.faults)
    assert.equal(1, st.errors)
    assert.same({ "a", "b" }, payloads(h, "out"))
    h:close()
  end)

  it("restarts at once when the runtime stops, so the spikes held for it are delivered", function()
    local h = run({ script = "bomb.lua", on_error = "policy",
                    restart = { backoff = "60s" }, config = { to = "out" } })
    h:inject("victim", "boom")
    h:inject("victim", "kept")
    h:tick(1)
    h:inject("victim", "queued")
    h:tick(1)
    assert.equal("backoff", h:stats("victim").state)
    h:stop()
    assert.equal("running", h:stats("victim").state)
    assert.same({ "kept", "queued" }, payloads(h, "out"))
    h:close()
  end)
end)

describe("the stop policy", function()
  it("counts the stopped neuron's inbound spikes as its dead letters, in the statistics", function()
    local h = run({ script = "bomb.lua", policy = "stop", on_error = "policy",
                    config = { to = "out" } })
    h:inject("victim", "a")
    h:inject("victim", "boom")
    h:inject("victim", "b")
    h:inject("victim", "c")
    h:tick(1)
    local st = h:stats("victim")
    assert.equal("stopped", st.state)
    assert.equal(0, st.restarts)
    assert.equal(2, st.dead_letters) -- b and c: the rest of the batch
    for i = 1, 25 do h:inject("victim", "late" .. i) end
    h:tick(2)
    assert.equal(27, h:stats("victim").dead_letters)
    assert.same({ "a" }, payloads(h, "out"))
    local err = select(2, pcall(h.state, h, "victim"))
    assert.matches("stopped by its policy", err)
    assert_bystander(h)
    h:close()
  end)
end)

describe("the watchdog", function()
  -- A long entry is reported, never a fault: it returns, its results and
  -- the rest of its batch are kept, and the neuron goes on.
  for _, jit in ipairs({ true, false }) do
    it("reports a long entry and lets it finish (jit = " .. tostring(jit) .. "): nothing stopped, nothing lost", function()
      local h = run({ script = "spin.lua", watchdog = "100ms", jit = jit, config = { to = "out" } })
      assert.equal(jit, h:stats("victim").jit)
      h:inject("victim", "before")
      h:inject("victim", "wait:350")
      h:inject("victim", "same batch")
      local t0 = now_ms()
      h:tick(1)
      assert.is_true(now_ms() - t0 >= 350) -- it ran to its end
      local st = h:stats("victim")
      assert.equal("running", st.state)
      assert.equal(1, st.watchdog_overruns)
      assert.equal(0, st.faults)
      assert.equal(0, st.restarts)
      assert.equal(0, st.errors)
      h:inject("victim", "later")
      h:tick(2)
      assert.equal(0, h:stats("victim").dead_letters)
      assert.same({ "before", "same batch", "later" }, payloads(h, "out"))
      assert_bystander(h)
      h:close()
    end)
  end

  it("counts nothing for entries under the limit", function()
    local h = run({ script = "spin.lua", watchdog = "200ms", config = { to = "out" } })
    h:inject("victim", "wait:20")
    h:tick(2)
    assert.equal(0, h:stats("victim").watchdog_overruns)
    h:close()
  end)

  it("takes watchdog_exit, which only `neuronbus run` acts on", function()
    local h = run({ script = "spin.lua", watchdog = "50ms", watchdog_exit = "100ms",
                    config = { to = "out" } })
    h:inject("victim", "wait:250")
    h:inject("victim", "after")
    h:tick(2) -- the harness's process is not exited
    assert.equal("running", h:stats("victim").state)
    assert.same({ "after" }, payloads(h, "out"))
    h:close()
  end)
end)

describe("the sandbox (sandbox = true)", function()
  local h
  setup(function()
    h = run({ script = "probe.lua", sandbox = true, config = { to = "out" } })
  end)
  teardown(function()
    assert_bystander(h)
    assert.equal(0, h:stats("victim").errors)
    h:close()
  end)

  -- Runs probe p in the sandboxed agent; returns what it reported.
  local function probe(p)
    local before = #h:received("out")
    h:inject("victim", p)
    h:tick(2)
    local got = h:received("out")
    assert.equal(before + 1, #got)
    return got[#got].payload
  end

  local DENIED = {
    ffi = "module 'ffi' is not available in the sandbox",
    ffi_global = "global 'ffi'",
    debug = "global 'debug'",
    debug_sethook = "global 'debug'",
    jit = "global 'jit'",
    jit_require = "module 'jit' is not available",
    io = "global 'io'",
    os_execute = "field 'execute'",
    os_exit = "field 'exit'",
    os_getenv = "field 'getenv'",
    bytecode = "wrong mode",
    bytecode_reader = "wrong mode",
    bytecode_loadstring = "wrong mode",
    string_dump = "field 'dump'",
    string_dump_method = "field 'dump'",
    string_meta = "field '__index'",
    require_module = "module 'neuronbus.ffi' is not available",
    require_os = "module 'os' is not available",
    loadlib = "global 'package'",
    getfenv = "global 'getfenv'",
    setfenv = "global 'setfenv'",
    loadfile = "global 'loadfile'",
    dofile = "global 'dofile'",
    newproxy = "global 'newproxy'",
    gc_stop = "not allowed in the sandbox",
  }
  local names = {}
  for k in pairs(DENIED) do names[#names + 1] = k end
  table.sort(names)
  for _, p in ipairs(names) do
    it("denies " .. p, function()
      local out = probe(p)
      assert.matches("^" .. p .. " denied: ", out)
      assert.is_truthy(out:find(DENIED[p], 1, true), out)
    end)
  end

  it("keeps the nb API and the safe libraries", function()
    for _, p in ipairs({ "math", "string", "load_text", "gc_count", "os_clock", "pcall_ok" }) do
      assert.matches("^" .. p .. " allowed: ", probe(p))
    end
    assert.equal("plain", probe("plain")) -- nb:fire_to and spike:payload
    assert.is_true(h:stats("victim").sandbox)
  end)

  it("an unsandboxed agent has them all (the probes do reach them)", function()
    local u = run({ script = "probe.lua", config = { to = "out" } })
    for _, p in ipairs({ "ffi", "debug", "jit", "io", "string_dump", "getfenv", "loadlib" }) do
      u:inject("victim", p)
    end
    u:tick(2)
    for _, r in ipairs(u:received("out")) do
      assert.matches("^%S+ allowed: ", r.payload)
    end
    assert.equal(7, #u:received("out"))
    u:close()
  end)
end)

-- How each key is checked without the runtime: spec/unit/manifest_isolation_spec.lua.
describe("the manifest keys", function()
  it("testing.agent takes them and reports them in h:stats", function()
    local a = testing.agent(FX .. "bomb.lua", { name = "b", memory = "8MB", budget = "50ms",
      sandbox = true, policy = "stop", peers = { "out" }, config = { to = "out" }, quiet = true })
    local st = a:stats("b")
    assert.equal(8 * MB, st.memory_limit)
    assert.is_false(st.jit)
    assert.is_true(st.sandbox)
    assert.equal("running", st.state)
    assert.is_true(st.memory > 0 and st.memory < 8 * MB)
    local ok, err = pcall(testing.agent, FX .. "bomb.lua", { budget = "20ms", jit = true })
    assert.is_false(ok)
    assert.matches("a budget needs jit = false", err)
    a:close()
  end)
end)
