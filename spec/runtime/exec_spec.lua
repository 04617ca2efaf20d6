-- nb.exec through the harness and the real runtime: output (all 5 MB of
-- it, and the 16 MiB cap), exit status and stderr, signals, stdin, env,
-- cwd, timeouts (SIGTERM, and SIGKILL after the grace), a missing command,
-- the sandbox's allowlist, and cancellation (task:cancel(), the agent's
-- restart, the runtime's stop) that leaves no child behind.
local testing = require("neuronbus.testing")
local manifest = require("neuronbus.manifest")
local helpers = require("helpers")

local RUNNER = manifest.absolute("spec/fixtures/exec/runner.lua")
local now_ms, sleep_ms = helpers.now_ms, helpers.sleep_ms

-- Returns a harness running the runner with jobs (and neuron keys opts).
local function runner(jobs, opts)
  opts = opts or {}
  opts.name, opts.refractory, opts.quiet = "runner", 0, true
  opts.config = { jobs = jobs }
  return testing.agent(RUNNER, opts)
end

-- Ticks h until cond(h) holds (at most ms); returns what cond returned.
local function until_(h, cond, ms)
  local t0 = now_ms()
  while true do
    h:tick(1)
    local v = cond(h)
    if v or now_ms() - t0 > (ms or 10000) then return v end
    sleep_ms(2)
  end
end

-- Starts the jobs and returns nb.state once all n are over.
local function run(h, n)
  h:inject("runner", "run")
  return until_(h, function() local s = h:state("runner"); return s.done == n and s end)
end

-- Returns true while process pid exists and is not a zombie.
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  if not f then return false end
  local st = f:read("*a"); f:close()
  return st:match("^%d+ %b() (%a)") ~= "Z"
end

-- Returns the pids a job wrote to file (waits for them, at most 5 s).
local function pids_in(h, file, n)
  return until_(h, function()
    local f = io.open(file, "rb")
    if not f then return nil end
    local t = {}
    for p in f:read("*a"):gmatch("%d+") do t[#t + 1] = tonumber(p) end
    f:close()
    return #t >= n and t
  end, 5000)
end

-- A job that writes its pid and a grandchild's to file, then waits.
local function sleeper(file)
  return { exec = { cmd = "sh", args = { "-c",
    "sleep 60 & echo $$ $! > " .. file .. "; wait" }, timeout = false } }
end

describe("nb.exec", function()
  local tmp
  before_each(function()
    tmp = os.tmpname(); os.remove(tmp)
    assert(os.execute("mkdir -p " .. tmp) == 0)
  end)
  after_each(function() os.execute("rm -rf " .. tmp) end)

  it("returns the exit status, stdout and stderr", function()
    local h = runner({
      { exec = { cmd = "sh", args = { "-c", "echo out; echo err >&2; exit 3" } } },
      { exec = { cmd = "true" } },
      { exec = { cmd = "sh", args = { "-c", "kill -9 $$" } } },
      { exec = { cmd = "/bin/echo", args = { "a b", 42 } } },
    })
    local s = run(h, 4)
    assert.same({ status = 3, ok = false, stdout = "out\n", stderr = "err\n" }, s.results[1])
    assert.same({ status = 0, ok = true, stdout = "", stderr = "" }, s.results[2])
    assert.same({ status = 137, signal = 9, ok = false, stdout = "", stderr = "" }, s.results[3])
    assert.equal("a b 42\n", s.results[4].stdout)
    h:close()
  end)

  it("receives all of a 5 MB stdout, and kills a process past 16 MiB", function()
    local h = runner({
      { exec = { cmd = "seq", args = { 1, 800000 } } },
      { exec = { cmd = "head", args = { "-c", 20000000, "/dev/zero" } } },
    })
    local s = run(h, 2)
    local len = 0
    for i = 1, 800000 do len = len + #tostring(i) + 1 end
    assert.equal(len, s.results[1].stdout_len)
    assert.equal(800000, s.results[1].stdout_lines)
    assert.equal("799999\n800000\n", s.results[1].stdout_tail)
    local r = s.results[2]
    assert.equal("stdout", r.truncated)
    assert.equal(16 * 1024 * 1024, r.stdout_len)
    assert.matches("nb.exec: head: stdout passed 16777216 bytes (the most nb.exec keeps of a stream): the process was killed", r.err, 1, true)
    h:close()
  end)

  it("passes stdin, env and cwd", function()
    local big = string.rep("0123456789", 100000)
    local h = runner({
      { exec = { cmd = "cat", stdin = "hello\nworld" } },
      { exec = { cmd = "wc", args = { "-c" }, stdin = big } },
      { exec = { cmd = "sh", args = { "-c", 'echo "$NB_FOO:${NB_GONE-unset}:${HOME:+home}"' },
                 env = { NB_FOO = "bar", NB_GONE = false } } },
      { exec = { cmd = "pwd", cwd = tmp } },
      { exec = { cmd = "cat" } }, -- no stdin: /dev/null
      { exec = { cmd = "true", stdin = big } }, -- never reads it (EPIPE)
    })
    local s = run(h, 6)
    assert.equal("hello\nworld", s.results[1].stdout)
    assert.equal("1000000", s.results[2].stdout:match("%d+"))
    assert.equal("bar:unset:home\n", s.results[3].stdout)
    assert.equal(helpers.sh("cd " .. tmp .. " && pwd -P"), s.results[4].stdout)
    assert.same({ status = 0, ok = true, stdout = "", stderr = "" }, s.results[5])
    assert.same({ status = 0, ok = true, stdout = "", stderr = "" }, s.results[6])
    h:close()
  end)

  it("kills a process at its timeout: SIGTERM, then SIGKILL after the grace", function()
    local h = runner({
      { exec = { cmd = "sleep", args = { 30 }, timeout = "200ms" } },
      { exec = { cmd = "sh", args = { "-c", "trap '' TERM; echo started; sleep 30" }, timeout = 0.2 } },
    })
    local t0 = now_ms()
    local s = run(h, 2)
    assert.is_true(now_ms() - t0 < 5000)
    assert.equal("nb.exec: sleep timed out after 200ms: killed with SIGTERM", s.results[1].err)
    assert.is_true(s.results[1].timed_out)
    assert.equal(143, s.results[1].status)
    assert.equal("nb.exec: sh timed out after 200ms: killed with SIGTERM, then SIGKILL", s.results[2].err)
    assert.equal("started\n", s.results[2].stdout)
    assert.equal(9, s.results[2].signal)
    h:close()
  end)

  it("names a command that does not exist", function()
    local h = runner({
      { exec = { cmd = "no-such-command-nb" } },
      { exec = { cmd = "/no/such/dir/tool" } },
      { exec = { cmd = "pwd", cwd = "/no/such/dir" } },
    })
    local s = run(h, 3)
    assert.equal("nb.exec: no-such-command-nb: command not found (not on the runtime's PATH)", s.results[1].err)
    assert.equal("nb.exec: /no/such/dir/tool: no such file", s.results[2].err)
    assert.matches("nb.exec: pwd: cwd /no/such/dir: No such file or directory", s.results[3].err, 1, true)
    assert.is_nil(s.results[1].status)
    h:close()
  end)

  it("runs in the sandbox only the commands of the exec key", function()
    local h = runner({
      { exec = { cmd = "echo", args = { "hi" } } },
      { exec = { cmd = "cat", stdin = "x" } },
      { exec = { cmd = "/bin/echo", args = { "hi" } } },
      { exec = { cmd = "/bin/sh", args = { "-c", "echo hi" } } },
    }, { sandbox = true, exec = { "echo", "/bin/sh" } })
    local s = run(h, 4)
    assert.equal("hi\n", s.results[1].stdout)
    assert.equal('nb.exec: "cat" is not allowed in the sandbox: it is not in neurons.runner.exec ("echo", "/bin/sh")',
      s.results[2].err)
    assert.matches('nb.exec: "/bin/echo" is not allowed in the sandbox', s.results[3].err, 1, true)
    assert.equal("hi\n", s.results[4].stdout)
    h:close()
    h = runner({ { exec = { cmd = "echo" } } }, { sandbox = true })
    s = run(h, 1)
    assert.equal('nb.exec: "echo" is not allowed in the sandbox: it is not in neurons.runner.exec (nothing)', s.results[1].err)
    h:close()
  end)

  it("raises for bad arguments and outside a task", function()
    local h = runner({
      { exec = { cmd = "" } },
      { exec = { cmd = "echo", argz = {} } },
      { exec = { cmd = "echo", env = { ["A=B"] = "x" } } },
      { exec = { cmd = "echo", timeout = "soon" } },
    })
    h:inject("runner", "run")
    until_(h, function() return #h:errors("runner") >= 4 end, 3000)
    local e = table.concat(h:errors("runner"), "\n")
    assert.matches('nb.exec: cmd: expected a command name or path, got ""', e, 1, true)
    assert.matches("nb.exec: unknown key argz", e, 1, true)
    assert.matches("nb.exec: env: A=B is not a variable name", e, 1, true)
    assert.matches("nb.exec: timeout: ", e, 1, true)
    h:close()
  end)

  it("kills the child and what it started when the task is cancelled", function()
    local file = tmp .. "/pids"
    local h = runner({ sleeper(file) })
    h:inject("runner", "run")
    local pids = pids_in(h, file, 2)
    assert.is_true(alive(pids[1]) and alive(pids[2]))
    h:inject("runner", "cancel:1")
    h:tick(2)
    assert.is_false(alive(pids[1]))
    assert.is_true(until_(h, function() return not alive(pids[2]) end, 3000))
    assert.equal(0, h:state("runner").done)
    h:close()
  end)

  it("kills the child when the agent restarts, and when the runtime stops", function()
    local file = tmp .. "/pids"
    local h = runner({ sleeper(file) }, { policy = "restart", on_error = "policy",
      restart = { backoff = "10ms" } })
    h:inject("runner", "run")
    local pids = pids_in(h, file, 2)
    h:inject("runner", "boom")
    h:tick(2)
    assert.is_true(until_(h, function() return h:stats("runner").restarts == 1 end, 3000))
    assert.is_false(alive(pids[1]))
    assert.is_true(until_(h, function() return not alive(pids[2]) end, 3000))
    -- started again in the fresh state, then the runtime stops
    os.remove(file)
    h:inject("runner", "run")
    pids = pids_in(h, file, 2)
    assert.is_true(alive(pids[1]))
    h:stop()
    assert.is_false(alive(pids[1]))
    h:close()
    local t0 = now_ms()
    while alive(pids[2]) and now_ms() - t0 < 3000 do sleep_ms(10) end
    assert.is_false(alive(pids[2]))
  end)
end)
