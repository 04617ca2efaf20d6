-- Hot reload: a neuron's new code is loaded between ticks into
-- its own state; nb.state is kept; spikes queued meanwhile go to the new
-- code, none lost or delivered twice; a broken version is rejected with
-- its file and line while the old one keeps running; the version is in
-- the card and the statistics; 1,000 reloads leave the heap where it was.
-- In each, a second pair (beat -> tally) that nobody reloads keeps routing
-- and loses nothing.
local ffi = require("ffi")
local bit = require("bit")
local testing = require("neuronbus.testing")
local helpers = require("helpers")

local FLOW = helpers.fixture("reload/flow.lua")
local RELAY = helpers.fixture("reload/relay.lua")

local read, write = helpers.read, helpers.write

local RELAY_SRC = read(RELAY)

-- Returns the relay's source with its label set to label.
local function relay_as(label)
  return (RELAY_SRC:gsub('local LABEL = "v1"', 'local LABEL = "' .. label .. '"'))
end

-- Returns the FNV-1a 64 hash of s as 16 hex digits (what the runtime uses).
local function fnv1a(s)
  local h = 0xcbf29ce484222325ULL
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i)) * 0x100000001b3ULL
  end
  return bit.tohex(h, 16)
end

-- Runs ticks until the sink has n spikes (at most max ticks).
local function run_until(h, n, max)
  for _ = 1, max or 2000 do
    if h:state("sink").got >= n then return end
    h:tick(1)
  end
end

-- Spikes the producer fired that the relay has not handled yet: they wait
-- in the producer's axon or the relay's inbox.
local function queued(h)
  return h:stats("producer").spikes_out - h:stats("relay").spikes_in
end

-- Asserts the bystander pair lost nothing: every beat arrived, in order.
local function assert_bystander(h)
  h:tick(400) -- beat sends 100 per tick, 20,000 in all
  local tally, beat = h:state("tally"), h:state("beat")
  assert.equal(20000, beat.sent)
  assert.equal(20000, tally.got)
  assert.equal(0, tally.bad)
  assert.equal(0, h:stats("tally").errors)
end

describe("hot reload", function()
  it("reloads a relay while 100,000 spikes flow: all arrive, each once, in order, old version before new", function()
    local h = testing.manifest(FLOW, { quiet = true })
    run_until(h, 30000)
    local q1 = queued(h)
    assert.is_true(q1 > 0, "spikes were queued for the relay at the reload")
    assert.is_true(h:reload("relay", relay_as("v2")))
    run_until(h, 60000)
    local q2 = queued(h)
    assert.is_true(q2 > 0)
    assert.is_true(h:reload("relay", relay_as("v3")))
    run_until(h, 100000)
    h:tick(5)
    local sink = h:state("sink")
    assert.equal(100000, sink.got)
    assert.equal(0, sink.bad, sink.first_bad)
    assert.equal(100001, sink.next)
    -- versions in order, each label with its own counter
    assert.same({ "1:v1", "2:v2", "3:v3" }, sink.order)
    local per = sink.per
    assert.equal(100000, per["1:v1"] + per["2:v2"] + per["3:v3"])
    assert.is_true(per["1:v1"] >= 30000 and per["2:v2"] > 0 and per["3:v3"] > 0)
    -- nb.state survived both reloads: the handled counts span all versions
    local relay = h:state("relay")
    assert.same({ v1 = per["1:v1"], v2 = per["2:v2"], v3 = per["3:v3"] }, relay.handled)
    assert.equal(2, relay.reloads) -- on_reload ran each time
    assert.equal(2, relay.from)    -- ... and was told the version it replaced
    assert.equal(100000, h:stats("relay").spikes_in)
    assert.equal(100000, h:stats("sink").spikes_in)
    assert.equal(0, h:stats("relay").errors)
    assert_bystander(h)
    h:close()
  end)

  it("delivers the spikes queued before the reload to the new code, each once", function()
    local h = testing.agent(RELAY, { name = "relay", refractory = 0, peers = { "sink" },
      config = { to = "sink" }, quiet = true })
    for i = 1, 50 do h:inject("relay", tostring(i)) end
    h:tick(1) -- routes and delivers: version 1 handles these 50
    for i = 51, 100 do h:inject("relay", tostring(i)) end
    assert.is_true(h:reload("relay", relay_as("v2")))
    h:tick(3)
    local got = helpers.payloads(h:received("sink"))
    assert.equal(100, #got)
    for i = 1, 100 do
      assert.equal(i .. (i <= 50 and ":1:v1" or ":2:v2"), got[i])
    end
    assert.same({ v1 = 50, v2 = 50 }, h:state("relay").handled)
    h:close()
  end)

  it("runs the new on_spike from the next tick even when the dispatch loop is compiled", function()
    -- 200 ticks of 500 spikes: the dispatch loop and on_spike are traced
    -- before the reload; the new version must still be the one called.
    local h = testing.manifest(FLOW, { quiet = true })
    h:tick(100)
    local before = h:state("sink").got
    assert.is_true(h:reload("relay", relay_as("hot")))
    h:tick(3)
    local sink = h:state("sink")
    assert.is_true(sink.per["2:hot"] > 0)
    -- what version 1 forwarded before the reload still arrives, then the rest
    assert.is_true(sink.per["1:v1"] >= before)
    assert.equal(sink.per["1:v1"] + sink.per["2:hot"], sink.got)
    assert.same({ "1:v1", "2:hot" }, sink.order)
    assert.equal(0, sink.bad, sink.first_bad)
    h:close()
  end)

  describe("a broken version", function()
    local h

    before_each(function()
      h = testing.manifest(FLOW, { quiet = true })
      h:tick(10)
    end)

    after_each(function() h:close() end)

    -- Asserts the reload of src is rejected with a message matching each
    -- pattern, that version 1 keeps running and handling spikes, and that
    -- nothing was lost on the way.
    local function rejected(src, ...)
      local ok, err = h:reload("relay", src)
      assert.is_nil(ok)
      assert.is_string(err)
      for _, pat in ipairs({ ... }) do
        assert.is_truthy(err:find(pat), "error \"" .. err .. "\" lacks " .. pat)
      end
      local v = h:version("relay")
      assert.equal(1, v.counter)
      assert.equal(fnv1a(RELAY_SRC), v.hash)
      assert.equal(0, v.reloads)
      local before = h:state("sink").per["1:v1"]
      h:tick(5)
      local sink = h:state("sink")
      assert.is_true(sink.per["1:v1"] > before, "the old version handles spikes")
      assert.same({ "1:v1" }, sink.order)
      assert.equal(0, sink.bad, sink.first_bad)
      assert.equal(0, h:stats("relay").errors)
      return err
    end

    -- Asserts that the fixed version then loads and takes over.
    local function then_fixed()
      assert.is_true(h:reload("relay", relay_as("fixed")))
      assert.equal(2, h:version("relay").counter)
      run_until(h, 100000)
      local sink = h:state("sink")
      assert.same({ "1:v1", "2:fixed" }, sink.order)
      assert.equal(100000, sink.got)
      assert.equal(0, sink.bad, sink.first_bad)
      assert_bystander(h)
    end

    it("with a syntax error is rejected naming the file and line", function()
      local src = RELAY_SRC:gsub("local agent = {}", "local agent = {}}", 1)
      local line = select(2, RELAY_SRC:sub(1, RELAY_SRC:find("local agent = {}", 1, true)):gsub("\n", "")) + 1
      rejected(src, "relay%.lua:" .. line .. ": unexpected symbol near '}'")
      assert.equal(1, h:version("relay").rejected)
      then_fixed()
    end)

    it("that does not return a table is rejected", function()
      rejected("local x = 1\nreturn 42\n", "relay%.lua: an agent script must return a table",
        "returned a number")
      rejected("local x = 1\n", "returned nothing")
      assert.equal(2, h:version("relay").rejected)
      then_fixed()
    end)

    it("without on_spike is rejected", function()
      rejected("return { tick = function() end }\n", "relay%.lua: the returned table has no on_spike function")
      then_fixed()
    end)

    it("that raises while it loads is rejected with the line", function()
      rejected("local agent = {}\n\nerror('not today')\nreturn agent\n",
        "relay%.lua: error while running the script: .*relay%.lua:3: not today")
      then_fixed()
    end)

    it("whose on_reload raises is rejected, the old table and nb.state's fields restored", function()
      local src = RELAY_SRC:gsub("function agent%.on_reload%(nb, old%)\n",
        "function agent.on_reload(nb, old)\n  nb.state.to = 'nowhere'\n  nb.state.migrated = true\n"
        .. "  nb.state = { wiped = true }\n  error('cannot migrate from ' .. old.counter)\n", 1)
      local err = rejected(src, "relay%.lua: on_reload raised: .*relay%.lua:%d+: cannot migrate from 1",
        "stack traceback")
      assert.is_truthy(err)
      local st = h:state("relay")
      assert.equal("sink", st.to)
      assert.is_nil(st.migrated)
      assert.is_nil(st.wiped)
      assert.is_nil(st.reloads)
      then_fixed()
    end)

    it("that is precompiled bytecode is rejected (a reload loads text only)", function()
      local bytecode = string.dump(loadstring(relay_as("bc")))
      rejected(bytecode, "relay%.lua: precompiled bytecode is refused")
      then_fixed()
    end)

    it("raises for a neuron without a script, and for an unknown one", function()
      assert.has_error(function() h:reload("test", "return {}") end)
      assert.has_error(function() h:reload("nobody", "return {}") end)
      assert.is_true(h:reload("relay", relay_as("fixed"))) -- still usable
    end)
  end)

  it("rejects a version that drops a custom filter a synapse into the neuron uses", function()
    local FILTERED = [[
local agent = {}
agent.filters = {}
function agent.filters.odd(spike) return tonumber(spike:payload()) % 2 == 1 end
function agent.on_spike(spike, nb) nb.state.n = (nb.state.n or 0) + 1 end
return agent
]]
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local script = dir .. "/filtered.lua"
    write(script, FILTERED)
    local h = testing.agent(script, { name = "f", refractory = 0, quiet = true,
      synapses = { { from = "test", to = "f", weight = 1,
        filters = { custom = "odd" } } } })
    local ok, err = h:reload("f", (FILTERED:gsub("agent%.filters%.odd", "agent.filters.even")))
    assert.is_nil(ok)
    assert.is_truthy(err:find('filtered%.lua: a synapse into this neuron uses the custom filter "odd"'))
    for i = 1, 10 do h:inject("f", tostring(i)) end
    h:tick(2)
    assert.equal(5, h:state("f").n) -- the old filter still runs
    assert.is_true(h:reload("f", FILTERED .. "-- v2\n"))
    h:close()
    os.remove(script)
    os.remove(dir)
  end)

  it("re-reads the script file: a broken file is rejected, fixing it reloads again", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local script = dir .. "/relay.lua"
    write(script, RELAY_SRC)
    local h = testing.agent(script, { name = "relay", refractory = 0, peers = { "sink" },
      config = { to = "sink" }, quiet = true })
    write(script, relay_as("v2"):gsub("function agent%.on_spike", "function agent.on_spike(", 1))
    local ok, err = h:reload("relay")
    assert.is_nil(ok)
    assert.is_truthy(err:find(script:gsub("%p", "%%%0") .. ":%d+:"), err)
    h:inject("relay", "1")
    h:tick(2)
    write(script, relay_as("v2"))
    assert.is_true(h:reload("relay"))
    h:inject("relay", "2")
    h:tick(2)
    assert.same({ "1:1:v1", "2:2:v2" }, helpers.payloads(h:received("sink")))
    local v = h:version("relay")
    assert.same({ counter = 2, hash = fnv1a(relay_as("v2")), reloads = 1, rejected = 1 }, v)
    h:close()
    os.remove(script)
    os.remove(dir)
  end)

  it("puts the version in the agent card, nb.version and the statistics", function()
    local h = testing.manifest(FLOW, { quiet = true })
    local function look()
      h:inject("observer", "look")
      h:tick(2)
      return h:state("observer")
    end
    local o = look()
    assert.same({ name = "relay", version = 1, hash = fnv1a(RELAY_SRC) }, o.card)
    assert.same({ version = 1, hash = fnv1a(read(helpers.fixture("reload/observer.lua"))) }, o.own)
    local v2 = relay_as("v2")
    assert.is_true(h:reload("relay", v2))
    o = look()
    assert.same({ name = "relay", version = 2, hash = fnv1a(v2) }, o.card)
    assert.same({ counter = 2, hash = fnv1a(v2), reloads = 1, rejected = 0 }, h:version("relay"))
    assert.equal(0, h:version("test").counter) -- a recorder has no code
    assert.equal("", h:version("test").hash)
    -- the statistics the command prints (JSON and table)
    ffi.cdef [[
      void *fopen(const char *path, const char *mode);
      int fclose(void *f);
      void nb_rt_print_stats(nb_rt_t *rt, void *f, int json, int final);
    ]]
    local R = testing.lib()
    local path = os.tmpname()
    for json = 0, 1 do
      local f = ffi.C.fopen(path, "w")
      R.nb_rt_print_stats(h._rt, f, json, 0)
      ffi.C.fclose(f)
      local text = read(path)
      if json == 1 then
        assert.is_truthy(text:find('"name":"relay",[^}]*"version":2,"hash":"' .. fnv1a(v2)
          .. '","reloads":1,"reloads_rejected":0}'), text)
        assert.is_truthy(text:find('"name":"test",[^}]*"version":0,"hash":""'), text)
      else
        assert.is_truthy(text:find("relay .* v2/" .. fnv1a(v2):sub(1, 8)), text)
      end
    end
    os.remove(path)
    assert_bystander(h)
    h:close()
  end)

  it("leaves the Lua heap within 10% after 1,000 reloads (JIT traces flushed)", function()
    local h = testing.manifest(FLOW, { quiet = true })
    h:tick(20)
    local base
    for i = 1, 1000 do
      -- A distinct source each time, with functions and a loop that the
      -- JIT compiles: each version leaves prototypes and traces behind.
      local tail = ("\n-- %d\nlocal function spin(n) local x = 0 for j = 1, n do "
        .. "x = x + j %% 7 end return x end\nspin(300)\nreturn agent\n"):format(i)
      local src = relay_as("r"):gsub("\nreturn agent\n$", function() return tail end)
      assert.is_true(h:reload("relay", src))
      h:tick(2)
      if i == 10 then base = h:memory("relay") end
    end
    local now = h:memory("relay")
    assert.equal(1001, h:version("relay").counter)
    assert.is_true(now <= base * 1.10, ("heap %d bytes after 1,000 reloads, %d after 10"):format(now, base))
    -- and the flow is intact: nothing lost, versions in order
    run_until(h, 100000, 5000)
    local sink = h:state("sink")
    assert.equal(100000, sink.got)
    assert.equal(0, sink.bad, sink.first_bad)
    assert_bystander(h)
    h:close()
  end)

  describe("a version compiled apart from the neuron's state", function()
    local COUNTER = helpers.fixture("reload/counter.lua")
    local COUNTER_SRC = read(COUNTER)

    -- Returns the counter's source with on_spike's body replaced by body.
    local function counter_with(body)
      return (COUNTER_SRC:gsub("nb%.state%.count = nb%.state%.count %+ 1", body))
    end

    it("keeps 64-bit and complex literals (the compiler loads the FFI itself)", function()
      local h = testing.agent(COUNTER, { refractory = 0, quiet = true })
      assert.is_true(h:reload("counter", counter_with(
        "nb.state.big = tostring(0x7fffffffffffffffLL) nb.state.im = tostring(2i)")))
      h:inject("counter", "a")
      h:tick(1)
      assert.equal("9223372036854775807LL", h:state("counter").big)
      assert.equal("0+2i", h:state("counter").im)
      h:close()
    end)

    it("runs sandboxed in a sandboxed neuron, bytecode still refused", function()
      local h = testing.agent(COUNTER, { refractory = 0, quiet = true, sandbox = true })
      assert.is_true(h:reload("counter", counter_with(
        "nb.state.io = type(io) nb.state.ffi = type(require) nb.state.count = (nb.state.count or 0) + 1")))
      h:inject("counter", "a")
      h:tick(1)
      local st = h:state("counter")
      assert.equal("nil", st.io)
      assert.equal(1, st.count)
      local ok, err = h:reload("counter", string.dump(loadstring(COUNTER_SRC)))
      assert.is_nil(ok)
      assert.matches("counter%.lua: precompiled bytecode is refused", err)
      assert.equal(2, h:version("counter").counter)
      h:close()
    end)

    it("frees the old versions even when the agent attached its own JIT event handler", function()
      local h = testing.manifest(FLOW, { quiet = true })
      h:tick(20)
      -- jit.attach keeps one handler per event: this one replaces the
      -- runtime's record of compiled traces, which then flushes them all.
      local function version(i)
        local tail = ("\n-- %d\nlocal function spin(n) local x = 0 for j = 1, n do "
          .. "x = x + j %% 7 end return x end\nspin(300)\n"
          .. "jit.attach(function() end, 'trace')\nreturn agent\n"):format(i)
        return (relay_as("r"):gsub("\nreturn agent\n$", function() return tail end))
      end
      local base
      for i = 1, 300 do
        assert.is_true(h:reload("relay", version(i)))
        h:tick(2)
        if i == 10 then base = h:memory("relay") end
      end
      local now = h:memory("relay")
      assert.is_true(now <= base * 1.10, ("heap %d bytes after 300 reloads, %d after 10"):format(now, base))
      run_until(h, 100000, 5000)
      assert.equal(100000, h:state("sink").got)
      assert.equal(0, h:state("sink").bad)
      h:close()
    end)

    it("that keeps more than the memory cap while it loads is rejected naming the cap", function()
      local h = testing.agent(COUNTER, { refractory = 0, quiet = true, memory = "4MB" })
      h:inject("counter", "a")
      h:tick(1)
      local src = COUNTER_SRC:gsub("local agent = {}", function()
        return "local t = {} for i = 1, 1e6 do t[i] = { i } end\nlocal agent = {}"
      end, 1)
      local ok, err = h:reload("counter", src)
      assert.is_nil(ok)
      assert.matches("counter%.lua: reload failed: memory limit 4 MB exceeded", err)
      assert.equal(1, h:version("counter").counter)
      h:inject("counter", "b")
      h:tick(1)
      assert.equal(2, h:state("counter").count) -- version 1 keeps counting
      assert.equal(0, h:stats("counter").errors)
      assert.is_true(h:reload("counter", counter_with("nb.state.count = nb.state.count + 10")))
      h:inject("counter", "c")
      h:tick(1)
      assert.equal(12, h:state("counter").count)
      h:close()
    end)

    it("whose top level churns garbage loads: the held collector runs again", function()
      -- The collector is held during the swap only until the heap grew by
      -- NB_LSTATE_GC_HOLD_MAX (1 MiB): 200 MB of short-lived tables load
      -- under a 4 MB cap, and an uncapped state does not balloon.
      local churn = COUNTER_SRC:gsub("local agent = {}", function()
        return "for i = 1, 2e6 do local t = { i, i, i, i } end\nlocal agent = {}"
      end, 1)
      for _, memory in ipairs({ "4MB", false }) do
        local h = testing.agent(COUNTER, { refractory = 0, quiet = true, memory = memory or nil })
        h:inject("counter", "a")
        h:tick(1)
        assert.is_true(h:reload("counter", churn))
        assert.equal(2, h:version("counter").counter)
        assert.is_true(h:stats("counter").memory_peak < 8 * 1024 * 1024,
          ("peak %d bytes"):format(h:stats("counter").memory_peak))
        h:inject("counter", "b")
        h:tick(1)
        assert.equal(2, h:state("counter").count)
        h:close()
      end
    end)
  end)
end)
