-- Worker threads (docs/workers.md): topologies spread over several
-- workers keep every guarantee of one thread. Every test here sets its
-- worker count itself (NB_TEST_WORKERS does not apply).
local testing = require("neuronbus.testing")
local serial = require("neuronbus.serial")
local manifest = require("neuronbus.manifest")
local helpers = require("helpers")

local WX = manifest.absolute("spec/fixtures/workers") .. "/"
local IX = manifest.absolute("spec/fixtures/isolation") .. "/"
local now_ms, sleep_ms = helpers.now_ms, helpers.sleep_ms

-- Returns a harness on topo (written to a file) with opts.
local function open(topo, opts)
  local path = os.tmpname()
  helpers.write(path, serial.dump(topo))
  local ok, h = pcall(testing.manifest, path, opts or { quiet = true })
  os.remove(path)
  if not ok then error(h, 2) end
  return h
end

-- Ticks h until cond(h) holds; raises after max_ms.
local function tick_until(h, cond, max_ms, what)
  local t0 = now_ms()
  while not cond(h) do
    if now_ms() - t0 > (max_ms or 20000) then
      error("timed out waiting for " .. (what or "a condition"), 2)
    end
    h:tick(1)
  end
end

describe("workers", function()
  it("spread a mesh over 4 workers: every spike of every pair (unicast, broadcast, arena payloads) arrives once, in order", function()
    local N, S, R = 3000, 6, 6
    local neurons, senders, receivers, synapses = {}, {}, {}, {}
    for r = 1, R do receivers[r] = "r" .. r end
    for s = 1, S do
      senders[s] = "s" .. s
      neurons[senders[s]] = { script = WX .. "mesh_send.lua", threshold = 0,
        refractory = 0, config = { to = receivers, n = N, batch = 24, bcast = 5 } }
      -- each sender broadcasts along two synapses (one STDP)
      synapses[#synapses + 1] = { from = senders[s], to = receivers[s], weight = 1 }
      synapses[#synapses + 1] = { from = senders[s], to = receivers[s % R + 1],
        weight = 0.8, stdp = {} }
    end
    for r = 1, R do
      neurons[receivers[r]] = { script = WX .. "mesh_recv.lua", refractory = 0,
                                threshold = 1e9 }
    end
    local h = open({ name = "mesh", tick = "free", workers = 4,
                     axon = { capacity = 256 }, arena = { size = "32MB" },
                     neurons = neurons, synapses = synapses },
                   { quiet = true, workers = 4 })
    -- the mesh really spans the workers
    local used = {}
    for _, n in ipairs(senders) do used[h:worker_of(n)] = true end
    for _, n in ipairs(receivers) do used[h:worker_of(n)] = true end
    assert.same({ [0] = true, true, true, true }, used)
    tick_until(h, function()
      for _, r in ipairs(receivers) do
        if h:state(r).got < S * N then return false end
      end
      return true
    end, 60000, "every unicast spike")
    h:tick(50) -- the last broadcasts
    local bsent = 0
    for _, s in ipairs(senders) do bsent = bsent + h:state(s).bsent end
    local bgot = 0
    for _, r in ipairs(receivers) do
      local st = h:state(r)
      assert.equal(S * N, st.got)
      assert.equal(0, st.bad, st.first_bad)
      for _, s in ipairs(senders) do
        assert.equal(N, st.last[h:id(s)], r .. " from " .. s)
      end
      bgot = bgot + st.bgot
      assert.equal(0, h:stats(r).dead_letters)
    end
    assert.is_true(bsent > 0)
    assert.equal(2 * bsent, bgot) -- each broadcast reached both synapses
    -- every worker ticked and delivered; nothing is left queued or in use
    for _, w in ipairs(h:workers()) do
      assert.is_true(w.ticks > 0 and w.delivered > 0, "worker " .. w.worker)
      assert.equal(0, w.queued)
    end
    -- every payload's references dropped: no sealed segment is left, only
    -- the writers' active ones (one per thread, and the loop's)
    local a = h:arena()
    assert.equal(0, a.sealed)
    assert.is_true(a.active <= 5, "active " .. a.active)
    h:close()
  end)

  it("back a slow sink on one worker up into a fast producer on another: bounded queues, nothing lost", function()
    local N = 20000
    local h = open({ name = "backpressure", tick = "free", workers = 2,
      axon = { capacity = 64 },
      neurons = {
        beat = { script = IX .. "beat.lua", threshold = 0, refractory = 0,
                 worker = 0, config = { to = "slow", n = N, batch = 200 } },
        -- every 50th spike costs the sink 2 ms
        slow = { script = WX .. "slow_count.lua", refractory = 0, worker = 1,
                 config = { every = 50, ms = 2 } },
      } }, { quiet = true, workers = 2 })
    local max_queued = 0
    tick_until(h, function()
      local q = h:workers()[2].queued
      if q > max_queued then max_queued = q end
      return h:state("slow").got >= N
    end, 60000, "the sink to get every spike")
    local st = h:state("slow")
    assert.equal(N, st.got)
    assert.equal(0, st.bad)
    assert.is_true(h:stats("beat").full > 0, "the producer felt the backpressure")
    -- the ring to worker 1 and its park hold at most 2 x 1024 spikes
    assert.is_true(max_queued <= 2048, "queued " .. max_queued)
    h:close()
  end)

  it("keep the other neurons of a worker flowing while one of them is stuck in a long call, and name it", function()
    local h = open({ name = "stuck", tick = "free", workers = 2,
      neurons = {
        stuck = { script = IX .. "spin.lua", refractory = 0, worker = 1,
                  config = { to = "out" } },
        beat = { script = IX .. "beat.lua", threshold = 0, refractory = 0,
                 worker = 0, config = { to = "tally", n = 1e9, batch = 10 } },
        tally = { script = IX .. "count.lua", refractory = 0, worker = 1 },
      } }, { quiet = true, workers = 2, peers = { "out" } })
    h:inject("stuck", "wait:1500")
    h:tick(2)
    -- once the call is older than 100 ms, the other thread ticks worker 1
    local seen_stuck
    local t0 = now_ms()
    local got0
    while now_ms() - t0 < 1000 do
      h:tick(1)
      local w1 = h:workers()[2]
      if w1.stuck and not seen_stuck and w1.stuck_ns > 100e6 then
        seen_stuck = w1.stuck
        got0 = h:state("tally").got
      end
    end
    assert.equal("stuck", seen_stuck)
    local w1 = h:workers()[2]
    assert.is_true(w1.adopted > 0, "worker 1 was adopted")
    -- tally, on the stuck neuron's worker, kept receiving meanwhile
    assert.is_true(h:state("tally").got - got0 > 1000,
      "tally got " .. (h:state("tally").got - got0) .. " while stuck was stuck")
    assert.equal(0, h:state("tally").bad)
    -- spikes to the stuck neuron wait, and arrive once it returns
    h:inject("stuck", "after")
    tick_until(h, function() return #h:received("out") == 1 end, 10000,
               "the spike sent while it was stuck")
    assert.equal("after", h:received("out")[1].payload)
    assert.is_nil(h:workers()[2].stuck)
    assert.equal(0, h:stats("stuck").errors)
    h:close()
  end)

  it("reload a neuron on another worker between its calls, and restart one after a fault, while the flow goes on", function()
    local h = open({ name = "reload_restart", tick = "free", workers = 2,
      neurons = {
        fwd = { script = IX .. "bomb.lua", refractory = 0, worker = 1,
                memory = "16MB", restart = { backoff = "5ms" },
                config = { to = "out" } },
        beat = { script = IX .. "beat.lua", threshold = 0, refractory = 0,
                 worker = 0, config = { to = "tally", n = 1e9, batch = 10 } },
        tally = { script = IX .. "count.lua", refractory = 0, worker = 1 },
      } }, { quiet = true, workers = 2, peers = { "out" } })
    h:inject("fwd", "a")
    tick_until(h, function() return #h:received("out") == 1 end, 5000)
    -- a memory bomb: the neuron restarts, its neighbour on worker 1 goes on
    h:inject("fwd", "table")
    h:inject("fwd", "b")
    tick_until(h, function() return #h:received("out") == 2 end, 10000,
               "the spike after the bomb")
    local st = h:stats("fwd")
    assert.equal(1, st.faults)
    assert.equal(1, st.restarts)
    assert.equal("running", st.state)
    assert.same({ "a", "b" }, helpers.payloads(h:received("out")))
    -- a reload: the new on_spike from the next tick on
    local src = [[
local agent = {}
function agent.init(nb, config) nb.state.to = config.to end
function agent.on_spike(spike, nb)
  nb:fire_to(nb.state.to, "v2:" .. spike:payload())
end
return agent
]]
    assert(h:reload("fwd", src))
    h:inject("fwd", "c")
    tick_until(h, function() return #h:received("out") == 3 end, 5000)
    assert.equal("v2:c", h:received("out")[3].payload)
    assert.equal(2, h:version("fwd").counter)
    assert.is_true(h:state("tally").got > 0)
    assert.equal(0, h:state("tally").bad)
    h:close()
  end)

  it("place neurons by key, by hash and by region, and check the keys", function()
    local function topo(extra, neurons)
      local t = { name = "place", tick = "free", neurons = neurons }
      for k, v in pairs(extra) do t[k] = v end
      return t
    end
    local n = {}
    for i = 1, 8 do
      n["n" .. i] = { script = IX .. "count.lua", region = "r" .. (i % 2) }
    end
    local h = open(topo({ workers = 3, placement = "region" }, n))
    -- one region, one worker
    for i = 3, 8 do
      local same = i % 2 == 1 and "n1" or "n2" -- n1 is in r1, n2 in r0
      assert.equal(h:worker_of(same), h:worker_of("n" .. i), "n" .. i)
    end
    h:close()
    n.n1.worker = 2
    h = open(topo({ workers = 3, placement = "hash" }, n))
    assert.equal(2, h:worker_of("n1"))
    assert.equal(3, #h:workers())
    h:close()
    -- bad keys: named, with where
    local _, errs = manifest.validate(topo({ workers = 0 }, n))
    assert.matches("^workers: 0 is out of range", errs[1])
    _, errs = manifest.validate(topo({ workers = "many" }, n))
    assert.matches('^workers: expected a number of workers or "auto"', errs[1])
    _, errs = manifest.validate(topo({ workers = 2, placement = "random" }, n))
    assert.matches('^placement: expected "round%-robin" or "hash" or "region"', errs[1])
    n.n1.worker = 2
    _, errs = manifest.validate(topo({ workers = 2 }, n))
    assert.matches("^neurons.n1.worker: 2 is out of range: workers = 2 gives workers 0 to 1", errs[1])
    -- pin: each worker thread (named nb-worker-N) runs on one CPU
    n.n1.worker = nil
    h = open(topo({ workers = 2, pin = true }, n))
    h:tick(2)
    local pinned = 0
    local ffi = require("ffi")
    pcall(ffi.cdef, "int getpid(void);")
    local task = "/proc/" .. ffi.C.getpid() .. "/task/"
    for tid in io.popen("ls " .. task):lines() do
      local f = io.open(task .. tid .. "/comm")
      local comm = f and f:read("*l")
      if f then f:close() end
      if comm and comm:match("^nb%-worker%-%d$") then
        local st = io.open(task .. tid .. "/status"):read("*a")
        local cpus = st:match("Cpus_allowed_list:%s*(%S+)")
        assert.matches("^%d+$", cpus, comm .. " runs on " .. cpus)
        pinned = pinned + 1
      end
    end
    assert.equal(2, pinned)
    h:close()
    _, errs = manifest.validate(topo({ pin = "yes" }, n))
    assert.matches("^pin: expected true or false", errs[1])
  end)
end)
