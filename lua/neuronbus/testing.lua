-- neuronbus.testing: drive the real runtime from busted.
--
--   local testing = require("neuronbus.testing")
--   local h = testing.manifest("agents/demo.lua")     -- a whole topology
--   local h = testing.agent("agents/counter.lua", {   -- one agent + peers
--     name = "counter", config = { every = 2, report_to = "sink" },
--     threshold = 1.0, rest = 0.0, leak = 0.95, refractory = 0,
--     capabilities = { "count" }, regions = { "demo/out" },
--     peers = { "sink", "w1" },
--   })
--   h:inject("counter", "hello", { from = "w1", kind = "excitatory", priority = 0 })
--   h:tick(3)
--   h:received("counter")  --> { {source="w1", source_id=, target="counter",
--                          --     target_id=, kind="excitatory", priority=0,
--                          --     payload="hello", sequence=, timestamp_ns=,
--                          --     weight=1}, ... }  (weight: the synapse's,
--                          --     1.0 without one; fired records say 1.0)
--   h:fired("counter"), h:state("counter"), h:stats("counter"),
--   h:weight("a", "b"), h:id("sink"), h:close()
--   h:reload("counter", new_source) --> true | nil, err  (hot reload; without
--                          --     new_source the script file is re-read)
--   h:version("counter")   --> { counter=, hash=, reloads=, rejected= }
--   h:memory("counter")    --> bytes of Lua heap in its state after a full GC
--   h:run_until_idle("5s") --> true | nil, msg: ticks and turns the loop
--                          --     until no task runs and no request or spike
--                          --     is pending (tasks, timers, nb.http, nb.exec)
--   h:tasks("counter")     --> live tasks (nil: every neuron's)
--   h:arena()              --> { capacity=, in_use=, segments=, free=, ... }
--   h:workers()            --> { { worker=0, ticks=, busy_ns=, delivered=,
--                          --     queued=, adopted=, stuck=name|nil }, ... }
--   h:worker_of("counter") --> its worker (0-based; docs/workers.md)
--
-- testing.agent's options are a neuron's manifest keys (config, threshold,
-- rest, leak, refractory, capabilities, region(s), description, and the
-- fault isolation keys memory = "16MB", budget = "20ms", jit = false,
-- watchdog = "1s" | false, sandbox = true, require = {...}, policy =
-- "restart" | "stop", on_error = "continue" | "policy", restart = { max =,
-- window =, backoff =, backoff_max = }) plus the harness's own (name,
-- peers, synapses, arena_size, axon_capacity, inbox_capacity, quiet,
-- workers). They
-- become a manifest that goes through neuronbus.manifest's validator, so a
-- misspelt key gets the manifest's "did you mean". h:stats(name) also
-- returns restarts, faults, dead_letters, state ("running" | "backoff" |
-- "stopped"), memory, memory_peak, memory_limit (bytes), mem_errors,
-- budget_overruns, watchdog_overruns, held, backoff_left_ns,
-- next_backoff_ns, jit, sandbox.
--
-- The runtime's shared library (build/<cfg>/libnbruntime.so, found through
-- NB_BUILD, else build/default beside this tree, or PREFIX/lib for an
-- install under PREFIX/share/lua/5.1) is loaded into the busted
-- process with ffi.load(path, true); every agent still runs in its own
-- lua_State created by that library, with the busted process's LuaJIT.
-- Recorder neurons (peers, and the built-in "test" that injects by
-- default) keep what they receive and never fire, so they are never
-- refractory. Everything any neuron receives or fires is recorded.

local ffi = require("ffi")
local bit = require("bit")
local nbffi = require("neuronbus.ffi")
local serial = require("neuronbus.serial")
local manifest = require("neuronbus.manifest")
local check = require("neuronbus.manifest.check")
local units = require("neuronbus.units")

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local setmetatable, error, loadstring = setmetatable, error, loadstring
local ffi_string = ffi.string

local _M = { _VERSION = "0.1.0" }

local LIB_KEY = "neuronbus.testing.lib"
local DEFAULT_SOURCE = "test"
local BROADCAST = nbffi.constants.BROADCAST
local E_NOENT = nbffi.constants.err.ENOENT

-- Returns where this file's runtime library is: build/default of the
-- source tree (lua/neuronbus/testing.lua) or lib of an install
-- (PREFIX/share/lua/5.1/neuronbus/testing.lua), or nil.
local function lib_dir()
  local here = package.searchpath("neuronbus.testing", package.path)
  if not here then return nil end
  if here:sub(1, 1) ~= "/" then
    local pwd = os.getenv("PWD") or io.popen("pwd"):read("*l")
    here = pwd .. "/" .. here
  end
  local prefix = here:match("^(.*)/share/lua/5%.1/neuronbus/testing%.lua$")
  if prefix then return prefix .. "/lib" end
  local root = here:match("^(.*)/lua/neuronbus/testing%.lua$")
  return root and root .. "/build/default"
end

-- Returns the loaded runtime library (kept in the registry: loaded once per
-- process even when busted reloads modules); raises naming where it looked.
function _M.lib()
  local reg = debug.getregistry()
  if reg[LIB_KEY] then return reg[LIB_KEY] end
  local tried = {}
  local function try(dir)
    if not dir or dir == "" then return nil end
    local path = dir .. "/libnbruntime.so"
    tried[#tried + 1] = path
    local f = io.open(path, "rb")
    if not f then return nil end
    f:close()
    -- RTLD_GLOBAL: the agent states' ffi.C must find nb_rt_* too.
    return ffi.load(path, true)
  end
  local lib = try(os.getenv("NB_BUILD")) or try(lib_dir())
  if not lib then
    error("neuronbus.testing: cannot find libnbruntime.so (looked at "
      .. table.concat(tried, ", ") .. "); build it with make, or point "
      .. "NB_BUILD at the build directory", 2)
  end
  reg[LIB_KEY] = lib
  return lib
end

local R = _M.lib()

local Harness = {}
Harness.__index = Harness

-- Returns a harness over the runtime rt.
local function wrap(rt)
  local h = setmetatable({ _rt = ffi.gc(rt, R.nb_rt_close), _names = {} }, Harness)
  local n = R.nb_rt_count(rt)
  for i = 0, n - 1 do
    h._names[i] = ffi_string(R.nb_rt_name(rt, i))
  end
  return h
end

-- Returns the worker count for the harness option workers (a number,
-- "auto", or nil: NB_TEST_WORKERS when set, else the manifest's), 0 for
-- "the manifest's"; raises on anything else.
local function workers_of(w)
  if w == nil then
    w = os.getenv("NB_TEST_WORKERS")
    if w == nil or w == "" then return 0 end
    w = tonumber(w) or w
  end
  if w == "auto" then return R.nb_rt_cpus() end
  if type(w) ~= "number" or w < 1 or w > nbffi.constants.MAX_WORKERS or w % 1 ~= 0 then
    error(("testing: workers: expected 1 to %d or \"auto\", got %s")
      :format(nbffi.constants.MAX_WORKERS, tostring(w)), 4)
  end
  return w
end

-- Returns runtime options for recording (quiet: agent errors are only
-- counted and kept for h:errors, not printed) and the recorder names they
-- point at (keep it referenced until the runtime is open): "test", then
-- o.peers.
local function opts_of(o)
  local opts = ffi.new("nb_rt_opts_t")
  opts.record = 1
  opts.quiet = (o and o.quiet) and 1 or 0
  opts.workers = workers_of(o and o.workers)
  local names = { DEFAULT_SOURCE }
  if o and o.peers and #o.peers > 0 then names[2] = table.concat(o.peers, ",") end
  opts.recorders = names[1]
  opts.peers = names[2]
  return opts, names
end

-- Returns the message in err[0] and frees it.
local function take_error(err)
  if err[0] == nil then return "unknown error" end
  local msg = ffi_string(err[0])
  R.nb_rt_free_string(err[0])
  return msg
end

-- Returns a harness running the manifest at path (every agent's init has
-- run); raises with every problem of the manifest. opts.workers (a number
-- or "auto"; default NB_TEST_WORKERS when set, else the manifest's) runs
-- the topology on that many worker threads. opts.quiet = true keeps
-- agent errors off stderr; opts.peers names recorder neurons to add (agents
-- reach them by name: a unicast needs no synapse).
function _M.manifest(path, opts)
  local err = ffi.new("char *[1]")
  local o, names = opts_of(opts)
  local rt = R.nb_rt_open(path, o, err)
  names = nil -- referenced until here: o points at it
  if rt == nil then
    error("testing.manifest(\"" .. tostring(path) .. "\"):\n" .. take_error(err), 2)
  end
  return wrap(rt)
end

-- Returns the file name of a script without directory and ".lua".
local function basename(path)
  return (path:match("([^/]+)$") or path):gsub("%.lua$", "")
end

-- The options of testing.agent the harness itself reads; every other one
-- is a key of the agent's neuron.
local HARNESS_KEYS = { "name", "peers", "synapses", "arena_size",
                       "axon_capacity", "inbox_capacity", "quiet", "workers" }
local HARNESS_SET = check.set_of(HARNESS_KEYS)

-- Returns opts as a user-form manifest for script running as the neuron
-- called name, and the validator's options (peers as recorders, "test"
-- as the injector); raises at level for an option that is neither a
-- harness option nor a neuron key but looks like a misspelt harness one.
local function manifest_of(script, name, opts, level)
  local spec = { script = script }
  local neuron_set = check.set_of(manifest.NEURON_KEYS)
  for _, k in ipairs(check.sorted_keys(opts)) do
    if not HARNESS_SET[k] then
      local hint = not neuron_set[k] and check.suggest(k, HARNESS_KEYS)
      if hint and not check.suggest(k, manifest.NEURON_KEYS) then
        error(("testing.agent: %s: unknown option, did you mean \"%s\"? (the "
          .. "harness takes %s; every other option is a key of the neuron)")
          :format(tostring(k), hint, table.concat(HARNESS_KEYS, ", ")), level + 1)
      end
      spec[k] = opts[k]
    end
  end
  local axon
  if opts.axon_capacity ~= nil or opts.inbox_capacity ~= nil then
    axon = { capacity = opts.axon_capacity, inbox = opts.inbox_capacity }
  end
  local tbl = {
    name = "testing.agent",
    tick = "free",
    arena = { size = opts.arena_size or 64 * 1024 * 1024 },
    axon = axon,
    neurons = { [name] = spec },
    synapses = opts.synapses,
  }
  return tbl, { recorders = opts.peers or {}, injector = DEFAULT_SOURCE }
end

-- Raises msg, the problems of testing.agent(script), at its caller's
-- caller, naming the peers option as the user wrote it.
local function raise_for(script, msg)
  msg = msg:gsub("recorders%[", "peers[")
  error("testing.agent(\"" .. script .. "\"):\n" .. msg, 3)
end

-- Returns a harness running script as one agent plus recorder peers.
-- opts: the keys of a manifest's neuron (config, threshold, rest, leak,
-- refractory, capabilities, regions, description, memory, budget, jit,
-- watchdog, sandbox, require, policy, on_error, restart), and the harness's
-- own: name (default: the script's file name), peers (names of recorder
-- neurons), synapses (as in a manifest: { from =, to =, weight =, stdp =,
-- filters = { kind =, priority =, prefix =, custom = } }), arena_size
-- (bytes, default 64 MiB), axon_capacity, inbox_capacity, quiet. The
-- built-in recorder "test" comes last. Raises every problem the manifest
-- validator finds, at the caller's level.
function _M.agent(script, opts)
  opts = opts or {}
  if type(script) ~= "string" then
    error("testing.agent: expected a script path, got a " .. type(script), 2)
  end
  if type(opts) ~= "table" then
    error("testing.agent: expected a table of options, got a " .. type(opts), 2)
  end
  local name = opts.name or basename(script)
  local tbl, vopts = manifest_of(script, name, opts, 2)
  -- The runtime validates what it is handed (the manifest, with the peers
  -- placed in name order and "test" last), once. Only a value that cannot
  -- even be written as Lua source (a function in config) is reported by
  -- validating here.
  local ok, src = pcall(serial.dump, tbl, "manifest")
  if not ok then
    local _, errs = manifest.validate(tbl, nil, vopts)
    raise_for(script, errs and table.concat(errs, "\n") or src)
  end
  local err = ffi.new("char *[1]")
  local o, names = opts_of({ quiet = opts.quiet, peers = opts.peers,
                             workers = opts.workers })
  local rt = R.nb_rt_open_topo(src, #src, "=testing.agent(" .. script .. ")",
    o, err)
  names = nil -- referenced until here: o points at it
  if rt == nil then raise_for(script, take_error(err)) end
  return wrap(rt)
end

-- Returns the runtime or raises when the harness was closed.
local function rt_of(h)
  local rt = h._rt
  if rt == nil then error("harness is closed", 3) end
  return rt
end

-- Returns the id of a neuron given by name or id; raises when unknown.
local function id_of(h, who, what)
  local rt = rt_of(h)
  if type(who) == "number" then
    if who >= 0 and who < R.nb_rt_count(rt) then return who end
  elseif type(who) == "string" then
    local id = R.nb_rt_id(rt, who)
    if id >= 0 then return id end
  end
  error((what or "neuron") .. ": no neuron " .. (type(who) == "string"
    and "named \"" .. who .. "\"" or tostring(who)), 3)
end

-- Returns the id of name, or nil.
function Harness:id(name)
  local id = R.nb_rt_id(rt_of(self), name)
  return id >= 0 and id or nil
end

-- Queues a spike to `to` (name or id, or "*" for a broadcast from `from`);
-- opts.from (default "test"), opts.kind (name or 0..2), opts.priority.
-- Raises on bad input or a full injection queue.
function Harness:inject(to, payload, opts)
  opts = opts or {}
  local rt = rt_of(self)
  local from = id_of(self, opts.from or DEFAULT_SOURCE, "inject from")
  local target = to == "*" and BROADCAST or id_of(self, to, "inject to")
  local kind = opts.kind or 0
  if type(kind) == "string" then
    kind = nbffi.KIND[kind] or error("inject: unknown kind \"" .. kind .. "\"", 2)
  end
  if payload ~= nil and type(payload) ~= "string" then
    error("inject: payload must be a string or nil, got a " .. type(payload), 2)
  end
  local rc = R.nb_rt_inject(rt, from, target, kind, opts.priority or 0,
    payload, payload and #payload or 0)
  if rc ~= 0 then
    error("inject: " .. ffi_string(R.nb_strerror(rc)), 2)
  end
end

-- Runs n ticks (default 1); returns the number of spikes delivered.
-- Returns one table per worker, in order: { worker, ticks, busy_ns,
-- delivered, queued, adopted, stuck = name of a neuron inside one call
-- now or nil, stuck_ns }.
function Harness:workers()
  local rt = rt_of(self)
  local out, st = {}, ffi.new("nb_rt_worker_stat_t")
  for w = 0, R.nb_rt_workers(rt) - 1 do
    R.nb_rt_worker_stat(rt, w, st)
    out[#out + 1] = {
      worker = w, ticks = tonumber(st.ticks), busy_ns = tonumber(st.busy_ns),
      delivered = tonumber(st.delivered), queued = tonumber(st.queued),
      adopted = tonumber(st.adopted), stuck_ns = tonumber(st.stuck_ns),
      stuck = st.stuck >= 0 and ffi_string(R.nb_rt_name(rt, st.stuck)) or nil,
    }
  end
  return out
end

-- Returns the worker neuron who runs on.
function Harness:worker_of(who)
  return R.nb_rt_worker_of(rt_of(self), id_of(self, who, "worker_of"))
end

function Harness:tick(n)
  local got = R.nb_rt_tick(rt_of(self), n or 1)
  if got < 0 then error("tick: " .. ffi_string(R.nb_strerror(got)), 2) end
  return tonumber(got)
end

local rec_spike = nbffi.spike_t()
local rec_data = ffi.new("const char *[1]")
local rec_len = ffi.new("size_t[1]")

-- Returns the records of neuron who: which 0 received, 1 fired.
local function records(h, who, which)
  local rt = rt_of(h)
  local id = id_of(h, who)
  local out = {}
  local n = tonumber(R.nb_rt_rec_count(rt, id, which))
  local names = h._names
  for i = 0, n - 1 do
    R.nb_rt_rec_get(rt, id, which, i, rec_spike, rec_data, rec_len)
    local s = rec_spike
    local src, dst = s.source, s.target
    out[i + 1] = {
      source = names[src] or src,
      source_id = src,
      target = dst == BROADCAST and "broadcast" or names[dst] or dst,
      target_id = dst,
      kind = nbffi.KIND_NAME[bit.band(s.meta, 3)],
      priority = s.priority,
      payload = ffi_string(rec_data[0], rec_len[0]),
      sequence = s.sequence,
      timestamp_ns = tonumber(s.timestamp_ns),
      weight = R.nb_rt_rec_weight(rt, id, which, i),
    }
  end
  return out
end

-- Returns what neuron who (name or id) received so far, in delivery order.
function Harness:received(who)
  return records(self, who, 0)
end

-- Returns what neuron who fired (or was injected as) so far, in order.
function Harness:fired(who)
  return records(self, who, 1)
end

-- Returns a deep copy of the agent's nb.state (plain data).
function Harness:state(who)
  local rt = rt_of(self)
  local err = ffi.new("char *[1]")
  local src = R.nb_rt_state_dump(rt, id_of(self, who), err)
  if src == nil then error("state: " .. take_error(err), 2) end
  local text = ffi_string(src)
  R.nb_rt_free_string(src)
  return assert(loadstring(text, "=nb.state"))()
end

local stat = ffi.new("nb_rt_stat_t")
local istat = ffi.new("nb_rt_isol_stat_t")
local STATES = { [0] = "running", "backoff", "stopped" }

-- Returns the counters of neuron who, with its fault isolation ones.
function Harness:stats(who)
  local rt, id = rt_of(self), id_of(self, who)
  R.nb_rt_stat(rt, id, stat)
  R.nb_rt_isol_stat(rt, id, istat)
  local s = istat
  return {
    restarts = tonumber(s.restarts),
    faults = tonumber(s.faults),
    dead_letters = tonumber(s.dead_letters),
    state = STATES[s.state],
    memory = tonumber(s.memory),
    memory_peak = tonumber(s.memory_peak),
    memory_limit = tonumber(s.memory_limit),
    mem_errors = tonumber(s.mem_errors),
    budget_overruns = tonumber(s.budget_overruns),
    watchdog_overruns = tonumber(s.watchdog_overruns),
    held = tonumber(s.held),
    backoff_left_ns = tonumber(s.backoff_left_ns),
    next_backoff_ns = tonumber(s.next_backoff_ns),
    jit = s.jit ~= 0,
    sandbox = s.sandbox ~= 0,
    spikes_in = tonumber(stat.spikes_in),
    spikes_out = tonumber(stat.spikes_out),
    fires = tonumber(stat.fires),
    errors = tonumber(stat.errors),
    full = tonumber(stat.full),
    deferred = tonumber(stat.deferred),
    filtered = tonumber(stat.filtered),
    arena_full = tonumber(stat.arena_full),
    tasks = tonumber(stat.tasks),
    kept = tonumber(stat.kept),
  }
end

local learn = ffi.new("uint64_t[4]")

-- Returns the learning counters: { rewards, connected, disconnected,
-- refused } (rewards routed; synapse changes agents made at run time).
function Harness:learning()
  R.nb_rt_learn_stats(rt_of(self), learn)
  return { rewards = tonumber(learn[0]), connected = tonumber(learn[1]),
           disconnected = tonumber(learn[2]), refused = tonumber(learn[3]) }
end

-- Ticks and turns the runtime's loop until no task runs, no request
-- (timer, HTTP, process, file) is pending and no spike waits, for at most
-- timeout (a duration string or seconds; default "10s"); returns true, or
-- nil and a message saying what is still pending.
function Harness:run_until_idle(timeout)
  local rt = rt_of(self)
  local ns = 10e9
  if timeout ~= nil then
    local err
    if type(timeout) == "number" and timeout >= 0 then
      ns = timeout * 1e9
    else
      ns, err = units.duration(timeout)
      if not ns then error("run_until_idle: " .. tostring(err), 2) end
    end
  end
  local rc = R.nb_rt_run_until_idle(rt, ns)
  if rc == 0 then return true end
  return nil, ("run_until_idle: still busy after %s: %d tasks, %d requests "
    .. "pending"):format(tostring(timeout or "10s"), tonumber(R.nb_rt_tasks(rt)),
    tonumber(R.nb_rt_requests(rt)))
end

-- Returns the number of live tasks of neuron who (all neurons when nil).
function Harness:tasks(who)
  if who == nil then return tonumber(R.nb_rt_tasks(rt_of(self))) end
  R.nb_rt_stat(rt_of(self), id_of(self, who), stat)
  return tonumber(stat.tasks)
end

local astat = ffi.new("nb_rt_arena_stat_t")

-- Returns the arena's counters: capacity, in_use (bytes), segment_size,
-- segments, free, active, sealed (segments), reclaimed, processes.
function Harness:arena()
  R.nb_rt_arena_stat(rt_of(self), astat)
  local t = {}
  for _, k in ipairs({ "capacity", "in_use", "reclaimed", "segment_size",
                       "segments", "free", "active", "sealed", "processes" }) do
    t[k] = tonumber(astat[k])
  end
  return t
end

-- Returns the weight of the synapse from -> to, or nil when there is none.
function Harness:weight(from, to)
  local w = R.nb_rt_weight(rt_of(self), id_of(self, from), id_of(self, to))
  if w < 0 then return nil end
  return w
end

-- Returns the agent errors of neuron who so far: an array of messages,
-- each "where: message" followed by its traceback.
function Harness:errors(who)
  local p = R.nb_rt_errors(rt_of(self), id_of(self, who))
  local text = ffi_string(p)
  R.nb_rt_free_string(p)
  local out = {}
  if text == "" then return out end
  for msg in (text .. "\n\f\n"):gmatch("(.-)\n\f\n") do out[#out + 1] = msg end
  return out
end

-- Hot-reloads neuron who between ticks: from new_source (a string of Lua
-- source) or, without it, from its script file re-read now; always loads,
-- even an unchanged source. Returns true, or nil and the reason (naming
-- the file and line) when the new version is rejected and the old one
-- keeps running. Raises for an unknown neuron or one without a script.
function Harness:reload(who, new_source)
  local rt = rt_of(self)
  local id = id_of(self, who, "reload")
  if new_source ~= nil and type(new_source) ~= "string" then
    error("reload: new_source must be a string or nil, got a "
      .. type(new_source), 2)
  end
  local err = ffi.new("char *[1]")
  local rc = R.nb_rt_reload(rt, id, new_source,
    new_source and #new_source or 0, 1, err)
  if rc == 1 then return true end
  local msg = take_error(err)
  if rc == E_NOENT then error("reload: " .. msg, 2) end
  return nil, msg
end

local version = ffi.new("nb_rt_version_t")

-- Returns the code version of neuron who: { counter = (1 at boot, +1 per
-- accepted reload; 0 without a script), hash = (FNV-1a 64 of the running
-- source, 16 hex digits), reloads = (accepted), rejected = (refused) }.
function Harness:version(who)
  R.nb_rt_version(rt_of(self), id_of(self, who), version)
  return {
    counter = tonumber(version.counter),
    hash = ffi_string(version.hash),
    reloads = tonumber(version.reloads),
    rejected = tonumber(version.rejected),
  }
end

-- Returns the bytes of Lua heap held by neuron who's own state after a
-- full garbage collection in it (nil for a neuron without a state).
function Harness:memory(who)
  local b = R.nb_rt_memory(rt_of(self), id_of(self, who))
  if b < 0 then return nil end
  return b
end

-- Delivers what is pending and calls every agent's on_stop (once); the
-- harness stays inspectable until close. Returns the ticks run.
function Harness:stop(max_ticks)
  return tonumber(R.nb_rt_stop(rt_of(self), max_ticks or 0))
end

-- Stops (if not yet) and frees the runtime; later calls do nothing.
function Harness:close()
  local rt = self._rt
  if rt == nil then return end
  self._rt = nil
  ffi.gc(rt, nil)
  R.nb_rt_close(rt)
end

return _M
