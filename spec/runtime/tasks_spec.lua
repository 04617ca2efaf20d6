-- Tasks from Lua agents: nb:spawn, nb:sleep, nb:after, nb:every; errors,
-- memory caps and budgets inside tasks; what reload, restart and stop do
-- to running tasks; max_tasks; the harness's run_until_idle.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

local TASKER = helpers.fixture("tasks/tasker.lua")

-- Returns the payloads the peer "me" received.
local function got(h)
  return helpers.payloads(h:received("me"))
end

describe("a task", function()
  it("sleeps without holding anyone up, then fires", function()
    local h = testing.agent(TASKER, { peers = { "me" }, quiet = true })
    local t0 = helpers.now_ms()
    h:inject("tasker", "sleep 120 slow", { from = "me" })
    h:inject("tasker", "sleep 20 fast", { from = "me" })
    h:tick(2)
    assert.same({}, got(h)) -- nothing yet: the tasks wait on the loop
    assert.equal(2, h:tasks("tasker"))
    assert.is_true(h:run_until_idle("5s"))
    assert.same({ "woke fast", "woke slow" }, got(h))
    assert.is_true(helpers.now_ms() - t0 >= 120)
    assert.equal(0, h:tasks("tasker"))
    h:close()
  end)

  it("that raises is an agent error naming the task's function; the agent goes on", function()
    local h = testing.agent(TASKER, { peers = { "me" }, quiet = true })
    h:inject("tasker", "raise", { from = "me" })
    assert.is_true(h:run_until_idle("5s"))
    local errs = h:errors("tasker")
    assert.equal(1, #errs)
    assert.matches("a task: in the task started at .*tasker.lua:%d+: .*raised in a task", errs[1])
    assert.matches("stack traceback", errs[1])
    h:inject("tasker", "sleep 1 still", { from = "me" })
    assert.is_true(h:run_until_idle("5s"))
    assert.same({ "woke still" }, got(h))
    h:close()
  end)

  it("is cancelled with task:cancel(), its pending sleep too", function()
    local h = testing.agent(TASKER, { peers = { "me" }, quiet = true })
    h:inject("tasker", "loop 10", { from = "me" })
    for _ = 1, 200 do h:tick(1); helpers.sleep_ms(1); if #got(h) >= 2 then break end end
    h:inject("tasker", "cancel", { from = "me" })
    h:tick(2)
    local n = #got(h)
    assert.is_true(n >= 2)
    assert.is_true(h:state("tasker").cancelled)
    assert.equal("cancelled", h:state("tasker").status)
    assert.is_true(h:run_until_idle("2s"))
    helpers.sleep_ms(30)
    h:tick(3)
    assert.equal(n, #got(h)) -- no tick after the cancel
    h:close()
  end)

  it("keeps running on its old closures through a hot reload", function()
    local h = testing.agent(TASKER, { peers = { "me" }, quiet = true })
    h:inject("tasker", "loop 5", { from = "me" })
    for _ = 1, 200 do h:tick(1); helpers.sleep_ms(1); if #got(h) >= 1 then break end end
    local src = helpers.read(TASKER):gsub('nb.state.version = "v1"', 'nb.state.version = "v2"')
    assert.is_true(h:reload("tasker", src))
    local before = #got(h)
    for _ = 1, 300 do h:tick(1); helpers.sleep_ms(1); if #got(h) >= before + 3 then break end end
    assert.is_true(#got(h) >= before + 3, "the task kept ticking after the reload")
    assert.equal(1, h:tasks("tasker"))
    h:close()
  end)

  it("is cancelled by a restart, with its request", function()
    local h = testing.agent(TASKER, { peers = { "me" }, quiet = true, on_error = "policy",
      restart = { backoff = "1ms", backoff_max = "1ms" } })
    h:inject("tasker", "sleep 50 never", { from = "me" })
    h:tick(2)
    assert.equal(1, h:tasks("tasker"))
    h:inject("tasker", "fail", { from = "me" })
    h:tick(2)
    assert.is_true(h:run_until_idle("5s"))
    assert.equal(1, h:stats("tasker").restarts)
    assert.equal(0, h:tasks("tasker"))
    assert.same({}, got(h)) -- the cancelled sleep never woke
    h:close()
  end)

  it("is cancelled by the runtime's stop", function()
    local h = testing.agent(TASKER, { peers = { "me" }, quiet = true })
    h:inject("tasker", "sleep 5000 never", { from = "me" })
    h:tick(2)
    assert.equal(1, tonumber(h:tasks()))
    h:stop()
    assert.equal(0, h:tasks("tasker"))
    h:close()
  end)

  it("under a memory cap: a bomb in a task is the neuron's fault, and it restarts", function()
    local h = testing.agent(TASKER, { peers = { "me" }, quiet = true, memory = "8MB",
      restart = { backoff = "1ms", backoff_max = "1ms" } })
    h:inject("tasker", "bomb", { from = "me" })
    h:run_until_idle("10s")
    local st = h:stats("tasker")
    assert.equal(1, st.restarts)
    assert.is_true(st.mem_errors >= 1)
    assert.matches("memory", h:errors("tasker")[1])
    h:close()
  end)

  it("with jit = false: a budget stops a spinning task per resume", function()
    local h = testing.agent(TASKER, { peers = { "me" }, quiet = true, budget = "50ms",
      restart = { backoff = "1ms", backoff_max = "1ms" } })
    h:inject("tasker", "spin", { from = "me" })
    h:run_until_idle("10s")
    local st = h:stats("tasker")
    assert.is_true(st.budget_overruns >= 1)
    assert.equal(1, st.restarts)
    h:close()
  end)

  it("is refused past max_tasks with a clear message", function()
    local h = testing.agent(TASKER, { peers = { "me" }, quiet = true, max_tasks = 5 })
    h:inject("tasker", "spawn 8", { from = "me" })
    h:tick(2)
    assert.equal(3, h:state("tasker").refused)
    assert.matches("too many tasks %(the neuron's max_tasks%)", h:state("tasker").refusal)
    assert.is_true(h:run_until_idle("5s"))
    h:close()
  end)
end)

describe("nb:sleep outside a task", function()
  it("raises a message that says where it may be called", function()
    local h = testing.agent(TASKER, { peers = { "me" }, quiet = true })
    h:inject("tasker", "outside", { from = "me" })
    h:tick(2)
    assert.matches("nb:sleep: only inside a task %(start one with nb:spawn%)", h:state("tasker").outside)
    h:close()
  end)
end)

describe("timers", function()
  it("nb:after fires once, nb:every until cancelled", function()
    local h = testing.agent(TASKER, { peers = { "me" }, quiet = true })
    h:inject("tasker", "after 30 once", { from = "me" })
    h:inject("tasker", "every 10", { from = "me" })
    for _ = 1, 500 do h:tick(1); helpers.sleep_ms(1); if #got(h) >= 5 then break end end
    h:inject("tasker", "cancel_every", { from = "me" })
    assert.is_true(h:run_until_idle("5s"))
    local p = got(h)
    local afters, everys = 0, 0
    for _, v in ipairs(p) do
      if v == "after once" then afters = afters + 1 end
      if v:match("^every %d+$") then everys = everys + 1 end
    end
    assert.equal(1, afters)
    assert.is_true(everys >= 3)
    local n = #got(h)
    helpers.sleep_ms(30)
    h:tick(3)
    assert.equal(n, #got(h)) -- no firing after the cancel
    h:close()
  end)
end)
