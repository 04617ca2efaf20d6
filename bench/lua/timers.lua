-- bench timers: starts config.n nb:after timers, config.batch per tick
-- (the agent is a pacemaker: its tick runs every tick), timer i asking for
-- a delay of ((i * 7919) % n) / n * config.span_ms ms (a deterministic
-- spread over 0 .. span). Each timer's due time is the runtime's clock
-- (nb_rt_now_ns, CLOCK_MONOTONIC) read just before its nb:after plus the
-- delay asked; its callback (a task) records lateness = now - due. Once
-- all n fired, nb.state gets the p50 and p99 (nearest rank, like the
-- bench's quantiles), min and max in microseconds and the count, and with
-- config.stop the agent ends nb_rt_run's loop (SIGTERM to its own
-- process, which the loop handles). A timer firing twice, or a count that
-- is off, raises (an agent error: the bench fails).
local ffi = require("ffi")
require("neuronbus.ffi") -- the runtime's cdefs: nb_rt_now_ns
pcall(ffi.cdef, [[
  int getpid(void);
  int kill(int pid, int sig);
]])
local C = ffi.C
local tonumber, floor, sort = tonumber, math.floor, table.sort

local agent = {}

local N, BATCH, SPAN_NS, STOP
local created, fired = 0, 0
local due, seen, late = {}, {}, {}

-- Returns the runtime's clock in ns as a Lua number.
local function now()
  return tonumber(C.nb_rt_now_ns())
end

function agent.init(nb, config)
  N = config.n
  BATCH = config.batch
  SPAN_NS = config.span_ms * 1e6
  STOP = config.stop
  nb.state.count = 0
end

-- Returns the q-quantile (nearest rank) of the sorted array v of n values.
local function quantile(v, n, q)
  local k = floor(q * n)
  if k >= n then k = n - 1 end
  return v[k + 1]
end

local nbh -- the handle, for the callbacks

-- Timer i's callback: records its lateness; the last one sums up.
local function on_timer(i)
  local t = now()
  if seen[i] then error("timer " .. i .. " fired twice") end
  seen[i] = true
  fired = fired + 1
  late[fired] = t - due[i]
  if fired == N then
    sort(late)
    local s = nbh.state
    s.count = fired
    s.p50_us = quantile(late, N, 0.50) / 1e3
    s.p99_us = quantile(late, N, 0.99) / 1e3
    s.min_us = late[1] / 1e3
    s.max_us = late[N] / 1e3
    if STOP then C.kill(C.getpid(), 15) end
  end
end

function agent.tick(nb)
  nbh = nb
  if created >= N then return end
  local last = created + BATCH
  if last > N then last = N end
  for i = created, last - 1 do
    local d = (i * 7919) % N / N * SPAN_NS
    local t0 = now()
    local tm, err = nb:after(d / 1e9, on_timer, i)
    if not tm then error("nb:after: " .. tostring(err)) end
    due[i] = t0 + d
  end
  created = last
end

-- No spikes come: on_spike is required of every agent.
function agent.on_spike() end

return agent
