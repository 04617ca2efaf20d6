-- neuronbus.sandbox_proxy: what a sandboxed agent gets instead of cdata.
--
-- A neuron with sandbox = true never receives a pointer or a writable
-- cdata (a cdata pointer indexes and adds without bounds: read and write
-- any address, then anything). neuronbus.agent hands it, in place of each
-- object the unsandboxed agents get:
--
--   spike       a proxy (a userdata whose metatable is hidden): fields
--               source, target, priority, sequence, timestamp_ns (a uint64
--               value, immutable), meta, weight (the synapse weight it was
--               delivered with, while on_spike runs; nil otherwise); methods kind(), kind_id(),
--               is_arena(), len(), payload(), view() (-> the payload as a
--               string and its length: no pointer), byte(i [, j]) (checked:
--               nil out of 1..len), keep(), copy(). Read-only. A delivered
--               spike's proxy reads the runtime's spike only while the
--               on_spike (or filter) it was handed to runs: every later use
--               raises ("no longer valid"); copy() and keep() are what
--               outlives the call.
--   copy        a proxy over a private 64-byte copy the agent cannot reach:
--               its arena reference is the runtime's, never forged; the
--               payload reads the right bytes or nil, "stale ..." after the
--               segment was reused (as an unsandboxed copy).
--   kept        a proxy over the nb_rt_kept_t: payload(), len(), view()
--               (string), byte(), spike() (a proxy, valid until release),
--               release().
--   task, timer, stream
--               proxies exposing the methods (and a stream's status,
--               headers, error): no coroutine, callback or guard object.
--
-- Every proxy is a userdata (newproxy: rawget and rawset refuse it) whose
-- metatable answers getmetatable with a string and refuses writes; its
-- methods find their object in tables private to this module (weak
-- keys), never in the proxy.
--
-- The one current delivered spike: deliver(ptr, i) makes a fresh proxy
-- the current one over ptr[i] (this tick's batch, i < count, or the
-- filter's spike), clear() ends it. neuronbus.agent calls clear() at
-- the start of every entry and after each batch, so a stored proxy can
-- never read a batch that is gone.

local ffi = require("ffi")
local nbffi = require("neuronbus.ffi")

local C = ffi.C
local type, tostring, tonumber, error, select = type, tostring, tonumber, error, select
local setmetatable, getmetatable, newproxy = setmetatable, getmetatable, newproxy
local rawget, pairs = rawget, pairs
local ffi_string, ffi_copy = ffi.string, ffi.copy
local str_byte, str_format = string.byte, string.format
local floor = math.floor

local K = nbffi.constants
local PAYLOAD_MAX, LEN_ARENA = K.PAYLOAD_MAX, K.LEN_ARENA
local spike_t = nbffi.spike_t
local rshift = require("bit").rshift

local _M = {}

local CELL = nil
local pdata = ffi.new("const char *[1]")
local plen = ffi.new("size_t[1]")

-- The current delivery: its number, and its spike as CUR_P[CUR_I] (the
-- batch pointer and an index, so that no spike reference is stored: a
-- stored cdata would be allocated per spike). CUR_P nil: none.
local EPOCH, CUR_P, CUR_I = 0, nil, 0
local COPY = setmetatable({}, { __mode = "k" })  -- proxy -> private spike_t
local KSPIKE = setmetatable({}, { __mode = "k" }) -- proxy -> kept cdata
local KEPT = setmetatable({}, { __mode = "k" })  -- handle proxy -> kept cdata

local GONE = "this spike is no longer valid: a spike handed to on_spike (or "
  .. "a filter) can be read only until it returns; keep what you need with "
  .. "spike:payload(), spike:copy() or spike:keep()"

-- Returns the runtime spike behind proxy p, or raises naming what.
local function get(p, what)
  if CUR_P ~= nil and type(p) == "table" and rawget(p, 1) == EPOCH then
    return CUR_P[CUR_I]
  end
  local c = COPY[p]
  if c then return c end
  local k = KSPIKE[p]
  if k then
    local s = C.nb_rt_kept_spike(CELL, k)
    if s == nil then error(what .. ": the kept payload was released", 3) end
    return s
  end
  local t = type(p)
  if t == "userdata" or t == "table" then error(what .. ": " .. GONE, 3) end
  error(what .. ": expected a spike, got a " .. type(p), 3)
end

local FIELDS = { source = "spike.source", target = "spike.target",
                 priority = "spike.priority", sequence = "spike.sequence",
                 timestamp_ns = "spike.timestamp_ns", meta = "spike.meta" }

local methods = {}

-- Proxies are userdata (newproxy over one template per kind): rawget and
-- rawset refuse them, and they hold nothing.
local SPIKE = newproxy(true)
local SP = getmetatable(SPIKE)
SP.__metatable = "spike"
SP.__newindex = function(_, k)
  error("a spike is read-only (field " .. tostring(k) .. ")", 2)
end

-- Returns a new spike proxy registered in side table with v.
local function proxy(side, v)
  local p = newproxy(SPIKE)
  side[p] = v
  return p
end

SP.__index = function(p, k)
  local f = FIELDS[k]
  if f then
    if CUR_P ~= nil and type(p) == "table" and rawget(p, 1) == EPOCH then
      return CUR_P[CUR_I][k] -- the hot path: a field of the spike delivered now
    end
    return get(p, f)[k]
  end
  local m = methods[k]
  if m then return m end
  if k == "weight" then
    -- The synapse weight the spike was delivered with: for the spike of
    -- this tick's batch being handed over now (nil for any other).
    if CUR_P ~= nil and CUR_P == CELL.spikes and type(p) == "table"
      and rawget(p, 1) == EPOCH then
      return tonumber(CELL.weights[CUR_I])
    end
    return nil
  end
  if k == "payload_bytes" then
    error("spike.payload_bytes is not available in the sandbox (no raw "
      .. "memory): use spike:payload(), spike:view() or spike:byte(i)", 2)
  end
  return nil
end

SP.__tostring = function(p)
  local s = get(p, "tostring(spike)")
  return str_format("spike(%d -> %d, %s, priority %d, seq %d, %d bytes)",
    s.source, s.target, s:kind(), s.priority, s.sequence, s:len() or -1)
end

function methods.kind(p) return get(p, "spike:kind()"):kind() end
function methods.kind_id(p) return get(p, "spike:kind_id()"):kind_id() end
function methods.is_arena(p) return get(p, "spike:is_arena()"):is_arena() end
function methods.len(p) return get(p, "spike:len()"):len() end
function methods.payload(p) return get(p, "spike:payload()"):payload() end

-- The sandbox's view: the payload as a string and its length (no pointer).
function methods.view(p)
  local s, err = get(p, "spike:view()"):payload()
  if not s then return nil, (err:gsub("payload%(%)", "view()")) end
  return s, #s
end

-- Returns the payload bytes i..j (string.byte's rules, j defaults to i),
-- read in place and checked against the payload's length; nil out of range.
function methods.byte(p, i, j)
  local s = get(p, "spike:byte()")
  if type(i) ~= "number" then i = 1 end
  j = j or i
  if type(j) ~= "number" then error("spike:byte(): expected numbers", 2) end
  local n = rshift(s.meta, 2)
  if n <= PAYLOAD_MAX then
    if i < 0 then i = n + i + 1 end
    if j < 0 then j = n + j + 1 end
    i, j = floor(i), floor(j)
    if i < 1 then i = 1 end
    if j > n then j = n end
    if i > j then return end
    if i == j then return s.payload_bytes[i - 1] end
    return str_byte(ffi_string(s.payload_bytes, n), i, j)
  end
  local str, err = s:payload()
  if not str then return nil, err end
  return str_byte(str, i, j)
end

-- Returns a proxy over a private copy of the spike's 64 bytes.
function methods.copy(p)
  local s = get(p, "spike:copy()")
  local c = spike_t()
  ffi_copy(c, s, 64)
  return proxy(COPY, c)
end

local KEPT_T = newproxy(true)
local KH = getmetatable(KEPT_T)
KH.__metatable = "kept payload"
local kmethods = {}
KH.__index = kmethods
KH.__newindex = function() error("a kept payload is read-only", 2) end

-- Returns a kept handle (a proxy) or nil and a message.
function methods.keep(p)
  local k, err = get(p, "spike:keep()"):keep()
  if not k then return nil, err end
  local h = newproxy(KEPT_T)
  KEPT[h] = k
  return h
end

-- Returns the kept cdata of handle h or raises.
local function kget(h, what)
  local k = KEPT[h]
  if not k then error(what .. ": expected a kept payload", 3) end
  return k
end

function kmethods.payload(h) return kget(h, "handle:payload()"):payload() end
function kmethods.len(h) return kget(h, "handle:len()"):len() end
function kmethods.release(h) return kget(h, "handle:release()"):release() end
function kmethods.spike(h)
  local k = kget(h, "handle:spike()")
  if k.serial == 0 or C.nb_rt_kept_spike(CELL, k) == nil then
    return nil, "kept payload: released already"
  end
  return proxy(KSPIKE, k)
end
function kmethods.view(h)
  local s, err = kget(h, "handle:view()"):payload()
  if not s then return nil, err end
  return s, #s
end
function kmethods.byte(h, i, j)
  local s, err = kmethods.spike(h)
  if not s then return nil, err end
  return methods.byte(s, i, j)
end
KH.__tostring = function(h) return tostring(kget(h, "tostring(handle)")) end

-- ---------------------------------------------------------------------
-- the current delivered spike (neuronbus.agent)

-- Makes ref (a runtime spike reference) the current spike; returns its
-- new proxy. The previous current proxy is invalid from now on.
function _M.deliver(ptr, i)
  -- A table holding its delivery's number, not a userdata: the JIT
  -- compiles it and, when on_spike does not keep it, sinks it (no
  -- allocation per spike), where newproxy would stop the trace. The number
  -- only selects: whatever a table claims, get() reads nothing but the
  -- current delivered spike (or the agent's copies and kept payloads).
  -- rawset on a proxy changes only the agent's own table.
  local e = EPOCH + 1
  EPOCH, CUR_P, CUR_I = e, ptr, i
  return setmetatable({ e }, SP)
end

-- Returns the current delivery (for set).
function _M.current()
  return EPOCH, CUR_P, CUR_I
end

-- Makes delivery e over ptr[i] current again (a filter asked during this
-- state's own on_spike); ptr nil: none.
function _M.set(e, ptr, i)
  EPOCH, CUR_P, CUR_I = e, ptr, i
end

-- Ends the current spike: no delivered proxy reads a runtime spike any more.
function _M.clear()
  EPOCH, CUR_P = EPOCH + 1, nil
end

-- ---------------------------------------------------------------------
-- tasks, timers, streams

-- Returns a proxy named name exposing fns (name -> function(obj, ...))
-- bound to obj, and the fields listed in fields (read from obj).
local function object(name, obj, fns, fields)
  local bound = {}
  for k, f in pairs(fns) do
    bound[k] = function(_, ...) return f(obj, ...) end
  end
  local p = newproxy(true)
  local mt = getmetatable(p)
  mt.__metatable = name
  mt.__index = function(_, k)
    local f = bound[k]
    if f then return f end
    if fields and fields[k] then return obj[k] end
    return nil
  end
  mt.__newindex = function(_, k)
    error("a " .. name .. " is read-only (field " .. tostring(k) .. ")", 2)
  end
  mt.__tostring = function() return name end
  return p
end

-- Returns the sandbox's view of task t (nb:spawn).
function _M.task(t)
  return object("task", t, { cancel = t.cancel, status = t.status })
end

-- Returns the sandbox's view of timer tm (nb:after, nb:every).
function _M.timer(tm)
  return object("timer", tm, { cancel = tm.cancel })
end

local STREAM_FIELDS = { status = true, headers = true, error = true }

-- Returns the sandbox's view of stream s (nb.http.stream). The guard that
-- closes a collected stream stays with s, which the proxy holds.
function _M.stream(s)
  return object("stream", s, { read = s.read, chunks = s.chunks,
    events = s.events, close = s.close }, STREAM_FIELDS)
end

-- Binds the module to this state's cell; returns nothing.
function _M.bind(cell)
  CELL = cell
end

return _M
