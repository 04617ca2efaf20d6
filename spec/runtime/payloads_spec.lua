-- The payload lifecycle seen from Lua agents: payloads are released after
-- delivery (unicast, broadcast, dead letters), kept alive while they wait
-- (refractory, a faulted batch held for a restart), kept on purpose with
-- spike:keep() up to keep_max, read in place with spike:view(), and a
-- spike:copy() reads right or stale, never wrong. A small arena makes
-- segments turn over many times in each test, so an early release would
-- show up as a bad or stale read.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

local DIR = helpers.fixture("payloads")
local HANDLE = helpers.fixture("runtime/handle.lua")

-- Writes a manifest for neurons (name -> spec table) and synapses into a
-- temporary file and returns a harness running it.
local function run(neurons, synapses, arena)
  local cwd = io.popen("pwd"):read("*l")
  local tbl = { name = "payloads", tick = "free", arena = { size = arena or "256KB" },
                neurons = {}, synapses = synapses }
  for name, spec in pairs(neurons) do
    local t = {}
    for k, v in pairs(spec) do t[k] = v end
    t.script = cwd .. "/" .. DIR .. "/" .. spec.script
    tbl.neurons[name] = t
  end
  local path = os.tmpname()
  helpers.write(path, require("neuronbus.serial").dump(tbl, "manifest"))
  local h = testing.manifest(path, { quiet = true, peers = { "test" } })
  os.remove(path)
  return h
end

-- Ticks h until pred() holds or n ticks ran; returns the ticks run.
local function tick_until(h, n, pred)
  for i = 1, n do
    h:tick(1)
    if pred() then return i end
  end
  return n
end

-- Asserts every segment but the loop writer's active one is free.
local function assert_all_free(h)
  local a = h:arena()
  assert.equal(0, a.sealed, "sealed segments left")
  assert.is_true(a.active <= 1, "active segments: " .. a.active)
  assert.equal(a.segments, a.free + a.active)
end

describe("a unicast payload", function()
  it("is released after on_spike returns: thousands through a 256 KB arena", function()
    local h = run({
      src = { script = "src.lua", threshold = 0, config = { count = 5000, burst = 50 } },
      sink = { script = "sink.lua" },
    })
    tick_until(h, 2000, function() return h:state("sink").got == 5000 end)
    local s = h:state("sink")
    assert.equal(5000, s.got)
    assert.equal(0, s.bad)
    assert.equal(0, s.out_of_order)
    assert.is_true(h:arena().reclaimed > 50, "segments were reused")
    assert_all_free(h)
    h:close()
  end)

  it("can be read in place with spike:view()", function()
    local h = run({
      src = { script = "src.lua", threshold = 0, config = { count = 3000 } },
      sink = { script = "sink.lua", config = { mode = "view" } },
    })
    tick_until(h, 2000, function() return h:state("sink").got == 3000 end)
    local s = h:state("sink")
    assert.equal(3000, s.got)
    assert.equal(0, s.bad)
    assert_all_free(h)
    h:close()
  end)

  it("waits alive while its refractory target defers it", function()
    local h = run({
      src = { script = "src.lua", threshold = 0, config = { count = 3000, burst = 100 } },
      sink = { script = "sink.lua", threshold = 0, refractory = 7 },
    })
    tick_until(h, 20000, function() return h:state("sink").got == 3000 end)
    local s = h:state("sink")
    assert.equal(3000, s.got)
    assert.equal(0, s.bad)
    assert.is_true(h:stats("sink").deferred > 0, "the sink deferred spikes")
    assert_all_free(h)
    h:close()
  end)
end)

describe("a broadcast payload", function()
  it("holds one reference per target: 8 sinks each check every byte", function()
    local neurons = { src = { script = "src.lua", threshold = 0,
                              config = { count = 2000, broadcast = true, burst = 20 } } }
    local syn = {}
    for i = 1, 8 do
      local name = "sink" .. i
      neurons[name] = { script = "sink.lua", config = { mode = i % 2 == 0 and "view" or "copy" },
                        refractory = i % 3 }
      syn[#syn + 1] = { from = "src", to = name }
    end
    local h = run(neurons, syn, "1MB")
    tick_until(h, 20000, function()
      for i = 1, 8 do if h:state("sink" .. i).got < 2000 then return false end end
      return true
    end)
    for i = 1, 8 do
      local s = h:state("sink" .. i)
      assert.equal(2000, s.got, "sink" .. i)
      assert.equal(0, s.bad, "sink" .. i)
      assert.equal(0, s.out_of_order, "sink" .. i)
    end
    assert_all_free(h)
    h:close()
  end)
end)

describe("a dead letter", function()
  it("releases its payload", function()
    local h = testing.agent(HANDLE, { name = "agent", refractory = 0, arena_size = 64 * 1024 })
    -- 64 KB: 16 segments of 4 KB; 400 payloads of 1 KB to nobody would
    -- fill it 6 times over if dead letters kept their payloads.
    local big = string.rep("x", 1024)
    for i = 1, 400 do
      h:inject("agent", "fire_to #60000 " .. big)
      h:tick(2)
    end
    assert_all_free(h)
    h:close()
  end)
end)

describe("spike:keep()", function()
  it("keeps payloads past on_spike; the source sees 'arena full', then flows again once released", function()
    local h = run({
      src = { script = "src.lua", threshold = 0, config = { count = 4000, burst = 50 } },
      sink = { script = "sink.lua", config = { mode = "keep" }, keep_max = 100000 },
    })
    -- The sink keeps everything: the 256 KB arena fills and fires fail.
    tick_until(h, 3000, function() return h:state("src").arena_full > 0 end)
    local src = h:state("src")
    assert.is_true(src.arena_full > 0, "the source saw the arena full")
    assert.matches("^arena full", src.last_error)
    assert.is_true(h:stats("src").arena_full > 0)
    local held = h:state("sink").got
    assert.is_true(held < 4000)
    assert.equal(held, h:stats("sink").kept)
    -- Released: the flow resumes by itself and nothing was lost.
    h:inject("sink", "release")
    tick_until(h, 5000, function()
      local s = h:state("sink")
      if s.kept_now and s.kept_now > 0 then h:inject("sink", "release") end
      return s.got == 4000
    end)
    h:inject("sink", "release")
    h:tick(5)
    local s = h:state("sink")
    assert.equal(4000, s.got)
    assert.equal(0, s.bad)
    assert.equal(0, s.out_of_order)
    assert.equal(0, h:stats("sink").kept)
    assert_all_free(h)
    h:close()
  end)

  it("is capped by keep_max with a clear message", function()
    local h = run({
      src = { script = "src.lua", threshold = 0, config = { count = 50 } },
      sink = { script = "sink.lua", config = { mode = "keep" }, keep_max = 10 },
    }, nil, "1MB")
    tick_until(h, 500, function() return h:state("sink").got == 50 end)
    local s = h:state("sink")
    assert.equal(50, s.got)
    assert.equal(40, s.keep_refused)
    assert.matches("keep_max", s.keep_error)
    assert.equal(10, h:stats("sink").kept)
    h:close()
  end)

  it("keeps a payload readable while the arena turns over many times", function()
    local h = run({
      src = { script = "src.lua", threshold = 0, config = { count = 6000, burst = 50 } },
      sink = { script = "sink.lua", config = { mode = "keep", hold = 20 } },
    }, nil, "512KB")
    tick_until(h, 5000, function() return h:state("sink").got == 6000 end)
    local s = h:state("sink")
    assert.equal(6000, s.got)
    assert.equal(0, s.bad) -- every released keep was checked again
    assert.is_true(h:arena().reclaimed > 100)
    h:close()
  end)

  it("is released when the state closes (restart or close)", function()
    local h = run({
      src = { script = "src.lua", threshold = 0, config = { count = 200 } },
      sink = { script = "sink.lua", config = { mode = "keep" } },
    }, nil, "1MB")
    tick_until(h, 500, function() return h:state("sink").got == 200 end)
    assert.equal(200, h:stats("sink").kept)
    h:stop()
    h:close() -- the arena is freed after every state: a leak would not crash
  end)
end)

describe("spike:copy()", function()
  it("reads its payload right or stale, never wrong", function()
    local h = run({
      src = { script = "src.lua", threshold = 0, config = { count = 5000, burst = 50 } },
      sink = { script = "sink.lua", config = { copies = 7 } },
    })
    tick_until(h, 3000, function() return h:state("sink").got == 5000 end)
    h:tick(3)
    local s = h:state("sink")
    assert.equal(0, s.copies_wrong)
    assert.is_true(s.copies_stale > 0, "some copies outlived their segment")
    assert.is_true(s.copies_right + s.copies_stale >= math.floor(5000 / 7) - 1)
    h:close()
  end)
end)

describe("a restart in the middle of large-payload flow", function()
  it("keeps the faulted batch's payloads for the new state and leaks nothing", function()
    local h = run({
      src = { script = "src.lua", threshold = 0, config = { count = 3000, burst = 50 } },
      sink = { script = "sink.lua", on_error = "policy", config = { fail_every = 500 },
               restart = { max = 100, backoff = "1ms", backoff_max = "1ms" } },
    })
    -- Restarts wait out a wall-clock backoff: tick until the flow is done
    -- and the sink runs again, for at most 10 s.
    local t0 = helpers.now_ms()
    repeat
      h:tick(100)
      local sink = h:stats("sink")
      local done = h:stats("src").spikes_out == 3000 and sink.state == "running"
        and sink.held == 0 and h:arena().sealed == 0
      if sink.state == "backoff" then helpers.sleep_ms(1) end
    until done or helpers.now_ms() - t0 > 10000
    assert.is_true(h:stats("sink").restarts >= 1)
    assert.equal(3000, h:stats("sink").spikes_in)
    for _, e in ipairs(h:errors("sink")) do
      assert.matches("failing on purpose", e) -- never "bad payload"
    end
    assert_all_free(h)
    h:close()
  end)
end)

describe("a reload in the middle of large-payload flow", function()
  it("keeps kept payloads and leaks nothing", function()
    local h = run({
      src = { script = "src.lua", threshold = 0, config = { count = 3000, burst = 50 } },
      sink = { script = "sink.lua", config = { mode = "keep", hold = 5 } },
    })
    tick_until(h, 200, function() return h:state("sink").got > 500 end)
    local src = helpers.read(DIR .. "/sink.lua")
    for _ = 1, 3 do
      assert.is_nil(select(2, h:reload("sink", src .. "\n-- reloaded\n")))
      h:tick(20)
    end
    tick_until(h, 5000, function() return h:state("sink").got == 3000 end)
    local s = h:state("sink")
    assert.equal(3000, s.got)
    assert.equal(0, s.bad)
    assert.equal(5, h:stats("sink").kept)
    h:close()
  end)
end)

describe("the holder of docs/payloads.md", function()
  it("keeps each request until its answer and sends both on", function()
    local h = testing.agent(helpers.fixture("docs/holder.lua"), {
      peers = { "worker", "critic" }, arena_size = 1024 * 1024,
      config = { worker = "worker", out = "critic" } })
    for i = 1, 200 do
      h:inject("holder", ("req:%d:"):format(i) .. string.rep("question ", 50))
    end
    h:tick(3)
    assert.equal(200, #h:received("worker"))
    assert.equal(200, h:stats("holder").kept)
    for i = 200, 1, -1 do h:inject("holder", ("ans:%d:answer %d"):format(i, i), { from = "worker" }) end
    h:tick(3)
    local got = h:received("critic")
    assert.equal(200, #got)
    assert.equal(("req:200:" .. string.rep("question ", 50)) .. "\nanswer 200", got[1].payload)
    assert.equal(0, h:stats("holder").kept)
    h:close()
  end)
end)
