-- neuronbus.tasks: tasks, the coroutines of an agent that wait on the
-- runtime's loop without blocking anyone (nb:spawn, nb:sleep, nb:after,
-- nb:every; nb.http and nb.exec wait through wait() below).
--
-- A task is a coroutine in the agent's own state. It starts between ticks
-- (never inside the on_spike or tick that spawned it) and runs until it
-- waits for a request: then it yields, and the runtime resumes it between
-- ticks, when the request's completion arrives, through the "resume" entry
-- (one entry per task step: the neuron's budget and watchdog apply per
-- resume, an error in a task is an agent error under its policy). on_spike
-- and tick stay plain calls: no coroutine per spike.
--
-- Lifetimes: a hot reload keeps every task running on the closures it
-- started with; a restart or a stop of the neuron, and the runtime's stop,
-- cancel every task and its pending request.
--
-- Internal to neuronbus.agent (one per state): bind(cell, handle) once at
-- boot, then resume() is the entry point.

local ffi = require("ffi")
local nbffi = require("neuronbus.ffi")
local units = require("neuronbus.units")

local C = ffi.C
local type, tostring, tonumber, error, pairs = type, tostring, tonumber, error, pairs
local select, setmetatable, unpack = select, setmetatable, unpack
local co_create, co_resume = coroutine.create, coroutine.resume
local co_status, co_running, co_yield = coroutine.status, coroutine.running, coroutine.yield
local ffi_string = ffi.string
local traceback, getinfo = debug.traceback, debug.getinfo

local E_LIMIT = nbffi.constants.err.ELIMIT

local _M = {}

local CELL = nil
local NB = nil
local EV = ffi.new("nb_rt_event_t")

local WAIT = {}      -- what a task yields while it waits on the loop
local CANCELLED = {} -- what a cancelled task raises to end itself
-- What a waiting task raises when code other than the scheduler resumed
-- its coroutine (coroutine.resume on coroutine.running() kept from inside
-- the task): only the runtime hands a task its events.
local FOREIGN = "a task waiting on the runtime was resumed by coroutine.resume: "
  .. "only the runtime resumes a waiting task"
local WAITING = {}   -- request id -> the task waiting for it
local OWNED = {}     -- request id -> the task whose stream it is (events
                     -- that come while it waits on something else queue)
local TIMERS = {}    -- request id -> the timer (nb:after, nb:every)
local TASK_OF = setmetatable({}, { __mode = "k" }) -- coroutine -> task
local RUNQ, runq_head, runq_tail = {}, 1, 0          -- tasks to start

-- Returns a short name for function fn: "file.lua:12".
local function fname(fn)
  local i = getinfo(fn, "S")
  if not i then return "?" end
  return (i.short_src or "?") .. ":" .. tostring(i.linedefined or "?")
end

-- Returns the message of an nb_err_t.
local function strerror(rc)
  return ffi_string(C.nb_strerror(rc))
end

-- Returns ns for a duration given as a string ("20ms") or a number of
-- seconds, or nil and a message naming what (the caller's name).
function _M.duration_ns(d, what)
  if type(d) == "number" then
    if d < 0 or d ~= d or d == math.huge then
      return nil, what .. ": expected a duration >= 0, got " .. tostring(d)
    end
    return d * 1e9
  end
  local ns, err = units.duration(d)
  if not ns then return nil, what .. ": " .. tostring(err) end
  return ns
end

local Task = {}
Task.__index = Task

-- Ends the bookkeeping of task t (done or dropped); returns nothing.
local function finish(t)
  if t.done then return end
  t.done = true
  TASK_OF[t.co] = nil
  if t.req then WAITING[t.req] = nil; t.req = nil end
  if t.owned then
    -- Streams the task did not read to their end go with it.
    for id in pairs(t.owned) do
      OWNED[id] = nil
      C.nb_rt_cancel(CELL, id)
    end
    t.owned = nil
  end
  C.nb_rt_task_end(CELL)
end

-- Cancels the task: its pending request is cancelled and it never runs
-- again (a task cancelling itself ends at once). Returns true.
function Task:cancel()
  if self.done or self.cancelled then return true end
  self.cancelled = true
  if self.req then
    C.nb_rt_cancel(CELL, self.req)
    WAITING[self.req] = nil
    self.req = nil
  end
  if co_running() == self.co then error(CANCELLED, 0) end
  finish(self)
  return true
end

-- Returns "running" (it runs now), "waiting", "queued", "done" or
-- "cancelled".
function Task:status()
  if self.cancelled then return "cancelled" end
  if self.done then return "done" end
  if co_running() == self.co then return "running" end
  if self.req then return "waiting" end
  return "queued"
end

-- Returns the task this code runs in; raises naming what otherwise.
function _M.current(what, level)
  local co = co_running()
  local t = co and TASK_OF[co]
  if not t then
    error(what .. ": only inside a task (start one with nb:spawn)", (level or 2) + 1)
  end
  return t
end

-- Makes task t wait for request id (from an nb_rt_* call: a negative id is
-- an error raised naming what); returns the event that ends the wait as a
-- table { status, code, data, data2, msg, final }. A stream's task waits
-- on its id again for each further event (see own).
function _M.wait(t, id, what)
  id = tonumber(id)
  if id < 0 then error(what .. ": " .. strerror(id), 3) end
  local q = t.owned and t.owned[id]
  if q and q.head <= q.tail then
    local ev = q[q.head]
    q[q.head] = nil
    q.head = q.head + 1
    if ev.final then _M.disown(t, id) end
    return ev
  end
  t.req = id
  WAITING[id] = t
  local ev = co_yield(WAIT)
  if not t.stepping then error(FOREIGN, 0) end
  if t.cancelled then error(CANCELLED, 0) end
  return ev
end

-- Makes request id (a stream) task t's: its events that arrive while t
-- waits on something else are queued for t's next wait on id, and the
-- request is cancelled if t ends first. Returns nothing.
function _M.own(t, id)
  OWNED[id] = t
  t.owned = t.owned or {}
  t.owned[id] = t.owned[id] or { head = 1, tail = 0 }
end

-- Undoes own (the stream ended); returns nothing.
function _M.disown(t, id)
  OWNED[id] = nil
  if t.owned then t.owned[id] = nil end
end

-- Cancels request id (a stream the task stopped reading); returns nothing.
function _M.cancel_request(id)
  C.nb_rt_cancel(CELL, id)
  WAITING[id] = nil
  local t = OWNED[id]
  if t then _M.disown(t, id) end
end

local step -- defined below

-- Makes a task for fn; returns it, or nil and a message (max_tasks
-- reached, the runtime stopping).
local function new_task(fn)
  local rc = C.nb_rt_task_begin(CELL)
  if rc ~= 0 then
    if rc == E_LIMIT then
      return nil, "nb:spawn: too many tasks (the neuron's max_tasks)"
    end
    return nil, "nb:spawn: " .. strerror(rc)
  end
  local t = setmetatable({ co = co_create(fn), name = fname(fn) }, Task)
  TASK_OF[t.co] = t
  return t
end

-- Starts a task running fn(...) between ticks; returns it, or nil and a
-- message (max_tasks reached, the runtime stopping).
function _M.spawn(fn, ...)
  if type(fn) ~= "function" then
    return nil, "nb:spawn: expected a function, got a " .. type(fn)
  end
  local t, err = new_task(fn)
  if not t then return nil, err end
  runq_tail = runq_tail + 1
  RUNQ[runq_tail] = { t, n = select("#", ...), ... }
  C.nb_rt_wake(CELL)
  return t
end

local Timer = {}
Timer.__index = Timer

-- Stops the timer (a callback already started runs on); returns true.
function Timer:cancel()
  if not self.cancelled then
    self.cancelled = true
    if TIMERS[self.id] then
      TIMERS[self.id] = nil
      C.nb_rt_cancel(CELL, self.id)
    end
  end
  return true
end

-- Starts a timer calling fn(...) as a task after d, and every d after
-- when every is true; returns it, or nil and a message.
function _M.timer(what, d, every, fn, ...)
  local ns, err = _M.duration_ns(d, what)
  if not ns then return nil, err end
  if type(fn) ~= "function" then
    return nil, what .. ": expected a function, got a " .. type(fn)
  end
  if every and ns < 1e6 then
    return nil, what .. ": the interval must be at least 1ms, got " .. tostring(d)
  end
  local id = tonumber(C.nb_rt_timer(CELL, ns, every and ns or 0))
  if id < 0 then return nil, what .. ": " .. strerror(id) end
  local tm = setmetatable({ id = id, fn = fn, n = select("#", ...), ... }, Timer)
  TIMERS[id] = tm
  return tm
end

-- Waits d inside a task (0: yields, resuming after the other ready work
-- of this neuron, between ticks, without a timer); returns true.
function _M.sleep(d)
  local t = _M.current("nb:sleep", 2)
  local ns, err = _M.duration_ns(d, "nb:sleep")
  if not ns then error(err, 2) end
  if ns == 0 then
    runq_tail = runq_tail + 1
    RUNQ[runq_tail] = { t, n = 0 }
    C.nb_rt_wake(CELL)
    co_yield(WAIT)
    if not t.stepping then error(FOREIGN, 0) end
    if t.cancelled then error(CANCELLED, 0) end
    return true
  end
  _M.wait(t, C.nb_rt_timer(CELL, ns, 0), "nb:sleep")
  return true
end

-- Runs task t until it waits, ends or fails; raises for a failure (the
-- entry's error: an agent error naming the task).
function step(t, ...)
  t.stepping = true
  local ok, err = co_resume(t.co, ...)
  t.stepping = false
  if co_status(t.co) == "dead" then
    finish(t)
    if not ok and err ~= CANCELLED then
      error(traceback(t.co, "in the task started at " .. t.name .. ": "
        .. tostring(err)), 0)
    end
  elseif err ~= WAIT then
    finish(t)
    error("in the task started at " .. t.name .. ": it yielded outside an nb call (a task "
      .. "waits with nb:sleep, nb.http, nb.exec, nb.files)", 0)
  end
end

-- Copies the event in EV (valid until the next pull) into a table.
local function decode()
  local e = EV
  return {
    status = tonumber(e.status),
    code = tonumber(e.code),
    data = e.data ~= nil and ffi_string(e.data, e.len) or nil,
    data2 = e.data2 ~= nil and ffi_string(e.data2, e.len2) or nil,
    msg = e.msg ~= nil and ffi_string(e.msg) or nil,
    final = e.final ~= 0,
  }
end

-- The resume entry: starts one queued task, or hands one completion to
-- the task (or timer) waiting for it; returns true when it did something,
-- false when nothing was left.
function _M.resume()
  if runq_head <= runq_tail then
    local item = RUNQ[runq_head]
    RUNQ[runq_head] = nil
    runq_head = runq_head + 1
    local t = item[1]
    if not t.cancelled then step(t, unpack(item, 2, item.n + 1)) end
    return true
  end
  if C.nb_rt_next_event(CELL, EV) == 0 then return false end
  local id = tonumber(EV.req)
  local t = WAITING[id]
  if t then
    local ev = decode()
    -- Delivered: the task waits again (on id or on anything) to get more.
    WAITING[id] = nil
    if ev.final then _M.disown(t, id) end
    if t.req == id then t.req = nil end
    step(t, ev)
    return true
  end
  local owner = OWNED[id]
  if owner then
    -- A stream's event while its task waits on something else: queued.
    local q = owner.owned[id]
    q.tail = q.tail + 1
    q[q.tail] = decode()
    return true
  end
  local tm = TIMERS[id]
  if tm then
    if EV.final ~= 0 then TIMERS[id] = nil end
    -- The callback starts as a task in this same entry.
    local t, err = new_task(tm.fn)
    if not t then
      error("timer callback " .. fname(tm.fn) .. " could not start: " .. err, 0)
    end
    step(t, unpack(tm, 1, tm.n))
  end
  return true -- an event no one waits for any more: dropped
end

-- Returns this state's cell (for the modules whose requests tasks wait
-- on: neuronbus.http, neuronbus.exec, neuronbus.files).
function _M.cell()
  return CELL
end

-- Binds the scheduler to this state's cell and handle; returns nothing.
function _M.bind(cell, nb)
  CELL, NB = cell, nb
end

return _M
