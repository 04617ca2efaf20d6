-- neuronbus.agent: the Lua half of a neuron's state.
--
-- The runtime (runtime/nb_rt.c) creates one LuaJIT state per neuron and
-- calls boot() in it once; boot loads the agent script, checks the agent
-- contract, builds the handle `nb`, and returns the entry points the C side
-- keeps on the state's stack. Agents never require this module themselves.
--
-- The handle nb:
--   nb.id, nb.name          this neuron's id and name
--   nb.state                a table owned by the agent
--   nb.BROADCAST            the target id meaning "every outgoing synapse"
--   nb:fire{target=, kind=, priority=, payload=}
--   nb:fire_to(target, payload)
--   nb:broadcast(payload)
--       target: a neuron id or name; kind: "excitatory" (default),
--       "inhibitory", "modulatory" or 0..2; priority 0..255 (default 0);
--       payload: nil or a string of any length (over 46 bytes it goes to
--       the arena). Each returns true, or nil and a message (axon full,
--       arena full, no such neuron, bad argument): firing never raises.
--   nb:discover(capability), nb:region(path), nb:fire_region(path, payload)
--       -> array of cards { id=, name=, capabilities={...}, regions={...},
--          version=, hash= } in id order (version: the neuron's code
--          version counter, 0 for a neuron without a script; hash: FNV-1a
--          64 of its source as 16 hex digits, "" without a script).
--   nb.version, nb.hash     this neuron's own code version (1 at boot, +1
--                           per accepted hot reload) and source hash
--   nb:connect(target, opts), nb:disconnect(target), nb:weight([from,] to),
--   nb:reward(target, r), nb:reward_region(path, r)
--                           synapses and rewards (neuronbus.synapses)
--   on_spike(spike, nb, weight): weight is the synapse weight the spike was
--                           delivered with (1.0 without a synapse)
--
-- Hot reload (reload() below, called by the runtime between ticks): the
-- new chunk's table replaces the agent, nb and nb.state are kept, and the
-- entry points look the agent's functions up on every call, so the next
-- dispatch runs the new on_spike.

local ffi = require("ffi")
local nbffi = require("neuronbus.ffi")
local serial = require("neuronbus.serial")
local tasks = require("neuronbus.tasks")

local C = ffi.C
local type, tostring, ipairs, pairs = type, tostring, ipairs, pairs
local setmetatable, loadfile, xpcall = setmetatable, loadfile, xpcall
local tonumber, error = tonumber, error
local getfenv, setfenv, next = getfenv, setfenv, next
local ffi_string = ffi.string
local traceback = debug.traceback
local io_open, registry = io.open, debug.getregistry

local BROADCAST = nbffi.constants.BROADCAST
local KIND = nbffi.KIND
local E_FULL = nbffi.constants.err.EFULL
local E_ENOENT = nbffi.constants.err.ENOENT

local _M = { _VERSION = "0.1.0" }

-- This state's neuron: set once by boot (one neuron per state).
local CELL = nil   -- nb_rt_cell_t*
local NB = nil     -- the handle
local AGENT = nil  -- the table the script returned
local ENV = nil    -- the environment the boot chunk ran in (reloads reuse it)
local names = {}   -- neuron name -> id, filled on first use

local CALLBACKS = { "init", "tick", "on_stop", "on_reload" }
local NONE = {}

local run_chunk -- defined after load_script

-- Returns the agent table of script after checking the agent contract, or
-- nil and a reason that names the file.
local function load_script(script)
  if type(script) ~= "string" then
    return nil, "agent script: expected a file name, got a " .. type(script)
  end
  -- Through the state's trusted loader (runtime/nb_lstate.c): text only
  -- and in the sandbox environment when the neuron is sandboxed.
  local sb = package.loaded["neuronbus.sandbox"]
  local chunk, err = (sb and sb.loadfile or loadfile)(script)
  if not chunk then
    return nil, "cannot load agent script: " .. tostring(err)
  end
  ENV = getfenv(chunk)
  return run_chunk(chunk, script)
end

-- Runs an agent chunk and checks the agent contract on what it returned;
-- returns the agent table, or nil and a reason that names the file.
function run_chunk(chunk, script)
  local ok, agent = xpcall(chunk, traceback)
  if not ok then
    -- The memory cap's error goes on to the host, which names the cap.
    if type(agent) == "string" and agent:find("^not enough memory") then
      error(agent, 0)
    end
    return nil, script .. ": error while running the script: " .. tostring(agent)
  end
  if type(agent) ~= "table" then
    return nil, script .. ": an agent script must return a table with an "
      .. "on_spike function, but it returned "
      .. (agent == nil and "nothing" or "a " .. type(agent))
  end
  if type(agent.on_spike) ~= "function" then
    return nil, script .. ": the returned table has no on_spike function"
      .. (agent.on_spike ~= nil and " (on_spike is a " .. type(agent.on_spike) .. ")" or "")
  end
  for _, k in ipairs(CALLBACKS) do
    if agent[k] ~= nil and type(agent[k]) ~= "function" then
      return nil, script .. ": " .. k .. " must be a function, got a " .. type(agent[k])
    end
  end
  if agent.filters ~= nil then
    if type(agent.filters) ~= "table" then
      return nil, script .. ": filters must be a table of functions, got a "
        .. type(agent.filters)
    end
    for k, f in pairs(agent.filters) do
      if type(f) ~= "function" then
        return nil, script .. ": filters." .. tostring(k)
          .. " must be a function, got a " .. type(f)
      end
    end
  end
  return agent
end

-- Returns "script:LINE", LINE being the line of the script's last top-level
-- return (where the agent table comes from), or the last line.
local function return_site(script)
  local f = io_open(script, "rb")
  if not f then return script .. ":1" end
  local n, last = 0, nil
  for line in f:lines() do
    n = n + 1
    if line:match("^return[%s%(%{]") or line == "return" then last = n end
  end
  f:close()
  return script .. ":" .. (last or (n > 0 and n or 1))
end

-- Returns a boot failure as one message that starts with the script's
-- FILE:LINE, then the neuron: the location a syntax or runtime error
-- carries, else the line that returns the agent table.
local function located(err, script, name)
  local who = "neuron " .. tostring(name) .. ": "
  local pat = script:gsub("%p", "%%%0")
  err = tostring(err)
  err = err:match("^cannot load agent script: (.*)$") or err
  local body = err:sub(1, #script + 2) == script .. ": "
    and err:sub(#script + 3) or err
  local line, msg = body:match("^error while running the script: " .. pat
    .. ":(%d+): (.*)$")
  if line then
    return script .. ":" .. line .. ": " .. who
      .. "error while running the script: " .. msg
  end
  line, msg = err:match("^" .. pat .. ":(%d+): (.*)$")
  if line then return script .. ":" .. line .. ": " .. who .. msg end
  return return_site(script) .. ": " .. who .. body
end

-- ---------------------------------------------------------------------
-- the handle

local Handle = {}
Handle.__index = Handle
Handle.BROADCAST = BROADCAST

-- Returns the id of a target given as an id or a name, or nil and a message.
local function resolve(target)
  if type(target) == "number" then return target end
  if type(target) ~= "string" then
    return nil, "target must be a neuron id or name, got a " .. type(target)
  end
  local id = names[target]
  if id then return id end
  id = C.nb_rt_lookup(CELL, target)
  if id < 0 then return nil, "no neuron named \"" .. target .. "\"" end
  names[target] = id
  return id
end

-- Returns the message for a failed fire (nb_err_t rc) to target.
local function fire_error(rc, target)
  if rc == E_ENOENT then
    return "no neuron with id " .. tostring(target)
  end
  local text = ffi_string(C.nb_strerror(rc))
  if rc == E_FULL then return "axon full: " .. text end
  return text
end

-- Returns a message for a payload that is not a string.
local function bad_payload(payload)
  return "payload must be a string or nil, got a " .. type(payload)
end

-- Fires an excitatory priority-0 spike; returns true or nil, message.
function Handle:fire_to(target, payload)
  local id = target
  if type(id) ~= "number" then
    local err
    id, err = resolve(target)
    if not id then return nil, err end
  end
  local len = 0
  if payload ~= nil then
    if type(payload) ~= "string" then return nil, bad_payload(payload) end
    len = #payload
  end
  local rc = C.nb_rt_fire(CELL, id, 0, 0, payload, len)
  if rc == 0 then return true end
  return nil, fire_error(rc, target)
end

-- Fires to every neuron of the region subtree path, here and (through one
-- NATS publish, at most once) in the other runtimes of the cluster; returns
-- the count of local neurons fired to, or nil, message.
function Handle:fire_region(path, payload)
  if type(path) ~= "string" then
    return nil, "nb:fire_region expects a region path, got a " .. type(path)
  end
  if payload ~= nil and type(payload) ~= "string" then
    return nil, bad_payload(payload)
  end
  local rc = tonumber(C.nb_rt_fire_region(CELL, path, payload,
    payload and #payload or 0))
  if rc >= 0 then return rc end
  return nil, fire_error(rc, path)
end

-- Fires to every outgoing synapse whose filters pass; true or nil, message.
function Handle:broadcast(payload)
  local len = 0
  if payload ~= nil then
    if type(payload) ~= "string" then return nil, bad_payload(payload) end
    len = #payload
  end
  local rc = C.nb_rt_fire(CELL, BROADCAST, 0, 0, payload, len)
  if rc == 0 then return true end
  return nil, fire_error(rc, "broadcast")
end

-- Fires with every field chosen; returns true or nil, message.
function Handle:fire(t)
  if type(t) ~= "table" then
    return nil, "nb:fire expects a table {target=, kind=, priority=, payload=}, got a "
      .. type(t)
  end
  local target = t.target
  if target == nil then
    return nil, "nb:fire: target is required (a neuron id or name, or nb.BROADCAST)"
  end
  local id, err = resolve(target)
  if not id then return nil, "nb:fire: " .. err end
  local kind = t.kind
  if kind == nil then
    kind = 0
  elseif type(kind) == "string" then
    kind = KIND[kind]
    if not kind then
      return nil, "nb:fire: kind must be \"excitatory\", \"inhibitory\" or "
        .. "\"modulatory\", got \"" .. t.kind .. "\""
    end
  elseif type(kind) ~= "number" or kind < 0 or kind > 2 or kind % 1 ~= 0 then
    return nil, "nb:fire: kind must be a kind name or 0..2, got " .. tostring(kind)
  end
  local prio = t.priority
  if prio == nil then
    prio = 0
  elseif type(prio) ~= "number" or prio < 0 or prio > 255 or prio % 1 ~= 0 then
    return nil, "nb:fire: priority must be an integer 0..255, got " .. tostring(prio)
  end
  local payload, len = t.payload, 0
  if payload ~= nil then
    if type(payload) ~= "string" then return nil, "nb:fire: " .. bad_payload(payload) end
    len = #payload
  end
  local rc = C.nb_rt_fire(CELL, id, kind, prio, payload, len)
  if rc == 0 then return true end
  return nil, "nb:fire: " .. fire_error(rc, target)
end

-- Scratch array for the ids nb_rt_find writes; grown on demand.
local idmax = 256
local idbuf = ffi.new("uint16_t[?]", idmax)

-- Returns the tags (which 0 capabilities, 1 regions) of neuron id.
local function tags(id, which)
  local out, i = {}, 0
  while true do
    local p = C.nb_rt_card_tag(CELL, id, which, i)
    if p == nil then return out end
    i = i + 1
    out[i] = ffi_string(p)
  end
end

-- Returns the cards of the neurons with capability what (region 0) or in
-- the region subtree what (region 1).
local function cards(region, what, method)
  if type(what) ~= "string" then
    error("nb:" .. method .. ": expected a string, got a " .. type(what), 3)
  end
  local n = tonumber(C.nb_rt_find(CELL, region, what, idbuf, idmax))
  if n > idmax then
    idmax = n
    idbuf = ffi.new("uint16_t[?]", idmax)
    n = tonumber(C.nb_rt_find(CELL, region, what, idbuf, idmax))
  end
  local out = {}
  for i = 0, n - 1 do
    local id = idbuf[i]
    local name = C.nb_rt_card_name(CELL, id)
    out[i + 1] = {
      id = id,
      name = name ~= nil and ffi_string(name) or nil,
      capabilities = tags(id, 0),
      regions = tags(id, 1),
      version = tonumber(C.nb_rt_card_version(CELL, id)),
      hash = ffi_string(C.nb_rt_card_hash(CELL, id)),
    }
  end
  return out
end

-- Synapses in the agent's hands and rewards (neuronbus.synapses).
local synapses = require("neuronbus.synapses")
Handle.connect = synapses.connect
Handle.disconnect = synapses.disconnect
Handle.weight = synapses.weight
Handle.reward = synapses.reward
Handle.reward_region = synapses.reward_region

-- Tasks (neuronbus.tasks): coroutines that wait on the loop.

Handle.http = require("neuronbus.http") -- nb.http.request/stream (in tasks)

-- Starts fn(...) as a task between ticks; returns the task (task:cancel(),
-- task:status()), or nil and a message.
function Handle:spawn(fn, ...)
  return tasks.spawn(fn, ...)
end

-- Waits d (a duration string, or seconds) inside a task; returns true.
function Handle:sleep(d)
  return tasks.sleep(d)
end

-- Calls fn(...) as a task once after d; returns the timer (timer:cancel()),
-- or nil and a message.
function Handle:after(d, fn, ...)
  return tasks.timer("nb:after", d, false, fn, ...)
end

-- Calls fn(...) as a task every d (at least 1ms); returns the timer, or nil
-- and a message.
function Handle:every(d, fn, ...)
  return tasks.timer("nb:every", d, true, fn, ...)
end

Handle.exec = require("neuronbus.exec").exec
Handle.files = require("neuronbus.files")

-- Returns the cards of every neuron with the capability.
function Handle:discover(capability)
  return cards(0, capability, "discover")
end

-- Returns the cards of every neuron in the region subtree path.
function Handle:region(path)
  return cards(1, path, "region")
end

-- ---------------------------------------------------------------------
-- entry points (called from C with lua_pcall and a traceback handler)

-- Tells the C side whether the agent has a tick function, so a neuron
-- without one that fires costs no entry into its state (an agent may add
-- or drop agent.tick in any callback: every entry that can ends here).
local function sync_tick()
  CELL.has_tick = AGENT.tick and 1 or 0
end

-- Hands this tick's batch to on_spike, one spike at a time. cell.pos is
-- stored before each call so that after an error C resumes at the next
-- spike. One call per tick per neuron: this loop is the hot path.
local function dispatch()
  local cell = CELL
  local spikes, weights = cell.spikes, cell.weights
  local on_spike = AGENT.on_spike
  local nb = NB
  local n = cell.count
  local i = cell.pos
  while i < n do
    cell.pos = i + 1
    on_spike(spikes[i], nb, weights[i])
    i = i + 1
  end
  cell.has_tick = AGENT.tick and 1 or 0 -- sync_tick, inline on the hot path
end

-- Calls agent.tick(nb) when the agent has one; returns nothing.
local function tick()
  local f = AGENT.tick
  if f then f(NB) end
  sync_tick()
end

-- Returns what agent.filters[name](spike, nb) returns for cell.fspike;
-- raises when the agent has no such filter.
local function filter(name)
  local fs = AGENT.filters
  local f = fs and fs[name]
  if not f then
    error("the agent has no filters." .. tostring(name) .. " function", 0)
  end
  return f(CELL.fspike[0], NB)
end

-- Calls agent.on_stop(nb) when the agent has one; returns nothing.
local function stop()
  local f = AGENT.on_stop
  if f then f(NB) end
end

-- Calls agent.init(nb, config or {}) when the agent has one.
local function init(config)
  local f = AGENT.init
  if f then f(NB, config or {}) end
  sync_tick()
end

-- Returns nb.state as Lua source (raises naming a non-plain value).
local function dump()
  return serial.dump(NB.state, "nb.state")
end

-- Returns true when the agent exports filters[name] as a function.
local function has_filter(name)
  local fs = AGENT.filters
  return type(fs) == "table" and type(fs[name]) == "function"
end

-- ---------------------------------------------------------------------
-- the sandbox's entry points (sandbox = true): the same entries, but each
-- spike is a proxy (neuronbus.sandbox_proxy) that reads the runtime's
-- spike only while the call it was handed to runs, and nb hands out no
-- cdata, coroutine or callback. The unsandboxed entries above are untouched.

local px -- neuronbus.sandbox_proxy, loaded by a sandboxed boot only

-- Returns the metatable of a sandboxed agent's nb: Handle's methods, with
-- tasks, timers and streams wrapped, behind a hidden metatable.
local function sandbox_handle_mt()
  local H = {}
  for k, v in pairs(Handle) do
    if k ~= "__index" then H[k] = v end
  end
  function H:spawn(fn, ...)
    local t, err = tasks.spawn(fn, ...)
    if not t then return nil, err end
    return px.task(t)
  end
  function H:after(d, fn, ...)
    local tm, err = tasks.timer("nb:after", d, false, fn, ...)
    if not tm then return nil, err end
    return px.timer(tm)
  end
  function H:every(d, fn, ...)
    local tm, err = tasks.timer("nb:every", d, true, fn, ...)
    if not tm then return nil, err end
    return px.timer(tm)
  end
  local http, files = Handle.http, Handle.files
  H.http = {
    request = http.request,
    stream = function(o)
      local st, err, kind = http.stream(o)
      if not st then return nil, err, kind end
      return px.stream(st)
    end,
  }
  H.files = { read = files.read, write = files.write }
  return { __index = H, __metatable = "nb" }
end

-- Returns the sandbox's entry points (see boot).
local function sandbox_entries()
  local deliver, clear = px.deliver, px.clear
  -- dispatch with each spike wrapped by deliver: a copy, so that the
  -- unsandboxed hot path calls no wrapper per spike.
  local function dispatch_sb()
    clear()
    local cell = CELL
    local spikes, weights = cell.spikes, cell.weights
    local on_spike = AGENT.on_spike
    local nb = NB
    local n = cell.count
    local i = cell.pos
    while i < n do
      cell.pos = i + 1
      on_spike(deliver(spikes, i), nb, weights[i])
      i = i + 1
    end
    clear()
    cell.has_tick = AGENT.tick and 1 or 0
  end
  local function filter_sb(name)
    local fs = AGENT.filters
    local f = fs and fs[name]
    if not f then
      error("the agent has no filters." .. tostring(name) .. " function", 0)
    end
    local e, ptr, i = px.current()
    local r = f(deliver(CELL.fspike, 0), NB)
    px.set(e, ptr, i) -- a filter asked during this state's own on_spike
    return r
  end
  -- Every other entry starts with no current spike.
  local function cleared(f)
    return function(...)
      clear()
      return f(...)
    end
  end
  return {
    dispatch = dispatch_sb,
    tick = cleared(tick),
    filter = filter_sb,
    stop = cleared(stop),
    init = cleared(init),
    dump = cleared(dump),
    has_filter = has_filter,
    resume = cleared(tasks.resume),
  }
end

-- Loads script as the agent of the neuron whose cell is the lightuserdata
-- cell_lud; returns the table of entry points, or nil and the reason the
-- script is refused. Called once per state by the runtime.
function _M.boot(cell_lud, script, name, id)
  if CELL then error("neuronbus.agent: this state already runs an agent", 2) end
  local agent, err = load_script(script)
  if not agent then return nil, located(err, script, name) end
  -- Where problems found later (a missing custom filter) point.
  registry()["neuronbus.site"] = return_site(script)
  -- The one cast of a lightuserdata, at boot; ticks read fields of it.
  CELL = ffi.cast("nb_rt_cell_t *", cell_lud)
  nbffi.bind(CELL)
  synapses.bind(CELL, resolve)
  AGENT = agent
  sync_tick()
  local sb = package.loaded["neuronbus.sandbox"]
  local sandboxed = sb and sb.sandboxed
  if sandboxed then
    px = require("neuronbus.sandbox_proxy")
    px.bind(CELL)
  end
  NB = setmetatable({ id = id, name = name, state = {},
    version = tonumber(C.nb_rt_card_version(CELL, id)),
    hash = ffi_string(C.nb_rt_card_hash(CELL, id)) },
    sandboxed and sandbox_handle_mt() or Handle)
  tasks.bind(CELL, NB)
  if sandboxed then return sandbox_entries() end
  return {
    dispatch = dispatch,
    tick = tick,
    filter = filter,
    stop = stop,
    init = init,
    dump = dump,
    has_filter = has_filter,
    resume = tasks.resume,
  }
end

-- Replaces this state's agent with the one chunk defines (hot reload; the
-- runtime compiled chunk from the new source text off the pause and calls
-- this between ticks). script is the file errors name; counter and hash
-- are the new version, old_counter and old_hash the running one; needed is
-- nil or an array of custom filter names that synapses into this neuron
-- use. Returns true, or nil and the reason naming the file and line, with
-- the old agent, nb.version/nb.hash and the top-level fields of nb.state
-- as they were.
function _M.reload(chunk, script, counter, hash, old_counter, old_hash,
                   needed)
  if not CELL then error("neuronbus.agent: reload before boot", 2) end
  if px then px.clear() end
  if ENV then setfenv(chunk, ENV) end
  local agent, why = run_chunk(chunk, script)
  if not agent then return nil, why end
  for _, name in ipairs(needed or NONE) do
    local fs = agent.filters
    if type(fs) ~= "table" or type(fs[name]) ~= "function" then
      return nil, script .. ": a synapse into this neuron uses the custom "
        .. "filter \"" .. name .. "\", but the new version has no filters."
        .. name .. " function"
    end
  end
  local old, nb = AGENT, NB
  AGENT = agent
  sync_tick()
  nb.version, nb.hash = counter, hash
  local f = agent.on_reload
  if f then
    -- Snapshot nb.state's top level: a failing on_reload must not leave the
    -- old code half-migrated state (nested tables changed in place stay
    -- changed; see the README).
    local state, saved = nb.state, {}
    if type(state) == "table" then
      for k, v in next, state do saved[k] = v end
    end
    local ok, e = xpcall(f, traceback, nb,
      { counter = old_counter, hash = old_hash })
    if not ok then
      AGENT = old
      sync_tick()
      nb.version, nb.hash = old_counter, old_hash
      nb.state = state
      if type(state) == "table" then
        for k in next, state do
          if saved[k] == nil then state[k] = nil end
        end
        for k, v in next, saved do state[k] = v end
      end
      return nil, script .. ": on_reload raised: " .. tostring(e)
    end
    sync_tick() -- on_reload may have changed agent.tick
  end
  return true
end

-- Returns this state's handle (nil before boot); for tools and specs.
function _M.handle()
  return NB
end

return _M
