-- neuronbus.manifest: loads, validates and normalizes a topology manifest.
--
--   local manifest = require("neuronbus.manifest")
--   local topo, errs = manifest.load("agents/demo.lua")
--   local topo, errs = manifest.validate(tbl, basedir, opts)
--   local topo, errs = manifest.load_source(src, label, basedir, default_name, opts)
--
-- Each returns the normalized topology and nil, or nil and an array of
-- messages, one per problem, each "key.path: message" (for instance
-- `neurons.parser.threshold: expected a number, got "high"`). Every problem
-- is collected, not just the first. Pure Lua (LuaJIT 2.1), no FFI: the
-- limits and defaults come from the generated neuronbus.layout, a plain Lua
-- file. The schema: neuronbus.manifest.neurons (neuron keys, synapses,
-- STDP, filters), .isolation (fault isolation keys), .links (TCP keys),
-- with the checker plumbing in .check.
--
-- The normalized topology, the one form the runtime reads (it trusts it):
--
--   { name,
--     tick_ns,                 -- 0 = free-running
--     arena = { size, path },  -- bytes; path absolute, or nil (anonymous)
--     axon_capacity, inbox_capacity, prune_every,
--     spike_time,              -- "auto" (default), "fire" or "tick"
--     neurons = {              -- sorted by name; ids follow this order
--       { name, script,        -- script: absolute path (nil for a remote
--                              -- neuron or a recorder)
--         regions, capabilities,         -- arrays of strings, maybe empty
--         description,                   -- a string, or nil
--         threshold, rest, leak, refractory,
--         config,                        -- plain data, {} when not given
--         -- a neuron with a script, every key with its default:
--         memory,              -- bytes, 0 = no cap
--         budget_ns,           -- 0 = none
--         jit,                 -- boolean (false when budget_ns > 0)
--         watchdog_ns,         -- a number, or false when off
--         sandbox,             -- boolean
--         require,             -- array of module names, or nil
--         policy,              -- "restart" | "stop"
--         on_error,            -- "continue" | "policy"
--         restart = { max, window_ns, backoff_ns, backoff_max_ns },
--         -- a neuron of another process (see neuronbus.manifest.links):
--         remote = { url, neuron } | { cortex, neuron } },
--       -- a recorder (opts.recorders, opts.injector):
--       { name, recorder = true, regions = {}, capabilities = {} } },
--     synapses = {             -- in the order given
--       { from, to, weight,
--         path,                -- the key path the user wrote: "synapses[1]"
--         stdp = nil | { mode ("pair" | "trace" | "reward"), mode_code
--                        (its NB_STDP_* value), a_plus, a_minus,
--                        tau_plus_ms, tau_minus_ms, w_min, w_max, lambda,
--                        alpha, mu_plus, mu_minus, tau_c_ms, tau_n_ms,
--                        baseline },
--         filters = {          -- in the order kind, priority, prefix, custom
--           { type = "kind", kinds = { "excitatory", ... }, path }
--         | { type = "priority", min, path }
--         | { type = "prefix", prefix, path }
--         | { type = "custom", name, path } } } },
--                              -- path: "synapses[1].filters.custom"
--     transport = nil | { listen, peers, accept, max_payload },
--                              -- see neuronbus.manifest.links
--     workers, placement, pin } -- see neuronbus.manifest.workers

local units = require("neuronbus.units")
local check = require("neuronbus.manifest.check")
local neurons = require("neuronbus.manifest.neurons")
local isolation = require("neuronbus.manifest.isolation")
local links = require("neuronbus.manifest.links")
local workers = require("neuronbus.manifest.workers")

local type, pairs, ipairs, next, tostring = type, pairs, ipairs, next, tostring
local setfenv, loadstring, assert, error = setfenv, loadstring, assert, error
local xpcall, select, unpack, tonumber = xpcall, select, unpack, tonumber
local io_open = io.open
local str_format, str_match, str_sub, str_byte, str_gsub =
  string.format, string.match, string.sub, string.byte, string.gsub
local debug_sethook, debug_gethook, debug_getinfo =
  debug.sethook, debug.gethook, debug.getinfo
local math_lib, string_lib, table_lib = math, string, table
local jit = rawget(_G, "jit") -- nil outside LuaJIT

local show, printable = units.show, units.printable
local K = check.K
local absolute = check.absolute

local _M = { _VERSION = "0.1.0" }
_M.absolute = absolute

-- A manifest that runs longer is stuck.
local MAX_INSTRUCTIONS = 50000000

-- The top-level keys.
local TOP_KEYS = { "name", "tick", "arena", "axon", "prune_every", "spike_time",
                   "neurons", "synapses" }
for _, k in ipairs(links.TOP_KEYS) do TOP_KEYS[#TOP_KEYS + 1] = k end
for _, k in ipairs(workers.TOP_KEYS) do TOP_KEYS[#TOP_KEYS + 1] = k end
local ARENA_KEYS = { "size", "path" }
local AXON_KEYS = { "capacity", "inbox" }

------------------------------------------------------------------------
-- sections
------------------------------------------------------------------------

-- Returns tick v in ns (0 for "free"), the default when absent, or nil.
local function check_tick(c, v)
  if v == nil then
    return K.TICK_DEFAULT_NS
  end
  if v == "free" then
    return 0
  end
  if type(v) ~= "string" and type(v) ~= "number" then
    return c:wrong("tick", 'a duration like "1ms" or "free"', v)
  end
  if v == 0 then
    return c:fail("tick", 'expected a duration above zero, got 0 (use "free" '
                  .. "for a free-running cortex)")
  end
  local ns, err = units.duration(v)
  if not ns then
    return c:fail("tick", 'expected "free" or ' .. str_sub(err, #"expected " + 1))
  end
  if ns <= 0 then
    return c:fail("tick", 'expected a duration above zero, got %s (use "free" '
                  .. "for a free-running cortex)", show(v))
  end
  return ns
end

-- Returns the normalized arena of v (size, absolute path or nil).
local function check_arena(c, v)
  local out = { size = K.ARENA_DEFAULT }
  local t = c:table("arena", v, true)
  if not t then
    return out
  end
  c:keys("arena", t, ARENA_KEYS)
  if t.size ~= nil then
    local bytes, err = units.size(t.size)
    if not bytes then
      c:fail("arena.size", err)
    elseif bytes == 0 then
      c:fail("arena.size", "expected a size above zero, got %s", show(t.size))
    else
      out.size = bytes
    end
  end
  if t.path ~= nil then
    if type(t.path) ~= "string" or t.path == "" then
      c:wrong("arena.path", "a file path", t.path)
    else
      out.path = absolute(t.path, c.basedir)
    end
  end
  return out
end

-- Returns true when n is a power of two.
local function is_pow2(n)
  while n > 1 and n % 2 == 0 do
    n = n / 2
  end
  return n == 1
end

-- Returns the axon capacity and inbox capacity of v.
local function check_axon(c, v)
  local default = K.AXON_DEFAULT
  local t = c:table("axon", v, true)
  if not t then
    return default, default
  end
  c:keys("axon", t, AXON_KEYS)
  local cap = c:integer("axon.capacity", t.capacity, default, 2, K.AXON_MAX)
  if cap and not is_pow2(cap) then
    cap = c:fail("axon.capacity", "%s is not a power of two (2, 4, 8, ... %d)",
                 show(cap), K.AXON_MAX)
  end
  local inbox = c:integer("axon.inbox", t.inbox, cap or default, 1, K.AXON_MAX)
  return cap or default, inbox or default
end

------------------------------------------------------------------------
-- public API
------------------------------------------------------------------------

-- Validates a manifest table; scripts and a relative arena path resolve
-- against basedir (default: the working directory). opts (all optional):
-- default_name names a manifest without a name; recorders (an array of
-- names) adds recorder neurons in name order, for the test harness;
-- injector names one more recorder placed last (the harness's default
-- injection source) unless a neuron or recorder has that name already.
-- Returns topo, nil or nil, errs.
function _M.validate(tbl, basedir, opts)
  opts = opts or {}
  local c = check.new(absolute(basedir or ".", nil))
  if type(tbl) ~= "table" then
    c:wrong("", "a table (the manifest)", tbl)
    return nil, c.errs
  end
  c:keys("", tbl, TOP_KEYS)
  local topo = {}
  local name = tbl.name
  if name == nil then
    name = opts.default_name
  end
  if name == nil then
    c:fail("name", "missing (the topology's name)")
  else
    topo.name = c:name("name", name, "a name")
  end
  topo.tick_ns = check_tick(c, tbl.tick)
  topo.arena = check_arena(c, tbl.arena)
  topo.axon_capacity, topo.inbox_capacity = check_axon(c, tbl.axon)
  topo.prune_every = c:integer("prune_every", tbl.prune_every, 0, 0, check.MAX_U32)
  -- "fire": each spike carries the time it was fired; "tick": the tick's;
  -- "auto": the tick's until a synapse learns (STDP), then "fire".
  if tbl.spike_time ~= nil then
    c:one_of("spike_time", tbl.spike_time, { "auto", "fire", "tick" })
  end
  topo.spike_time = tbl.spike_time or "auto"
  local known
  topo.neurons, known = neurons.check_neurons(c, tbl.neurons, opts)
  topo.synapses = neurons.check_synapses(c, tbl.synapses, known)
  topo.transport = links.check(c, tbl, topo)
  workers.check(c, tbl, topo)
  if #c.errs > 0 then
    return nil, c.errs
  end
  return topo
end

-- Returns a copy of a library table, so a manifest cannot change the
-- host's.
local function copy_lib(lib)
  local t = {}
  for k, v in pairs(lib) do
    t[k] = v
  end
  return t
end

-- Returns the environment a manifest runs in: pure functions only (no io,
-- os, require, load, debug).
local function sandbox()
  return {
    assert = assert, error = error, ipairs = ipairs, next = next,
    pairs = pairs, select = select, tonumber = tonumber,
    tostring = tostring, type = type, unpack = unpack,
    math = copy_lib(math_lib), string = copy_lib(string_lib),
    table = copy_lib(table_lib),
  }
end

-- Runs fn with an instruction budget; returns pcall's results with the
-- error message given the manifest's file and line when it lacks them.
local function run_chunk(fn, chunkname, label)
  if jit then
    jit.off(fn, true) -- the count hook only fires in interpreted code
  end
  local function handler(msg)
    msg = tostring(msg)
    if str_sub(msg, 1, #label + 1) == label .. ":" then
      return msg
    end
    for level = 2, 50 do
      local info = debug_getinfo(level, "Sl")
      if not info then
        break
      end
      if info.source == chunkname and info.currentline > 0 then
        return str_format("%s:%d: %s", label, info.currentline, msg)
      end
    end
    return label .. ": " .. msg
  end
  local old_hook, old_mask, old_count = debug_gethook()
  if old_hook ~= nil and type(old_hook) ~= "function" then
    -- A hook set from C (an agent's time budget, a profiler, a fuzzer's
    -- coverage): Lua could not put it back once replaced, so it stays,
    -- and bounds the chunk in its place (the runtime's own manifest
    -- state has none: there the instruction limit applies).
    return unpack({ xpcall(fn, handler) }, 1, 2)
  end
  debug_sethook(function()
    error(str_format("ran for over %d instructions (an endless loop?)",
                     MAX_INSTRUCTIONS), 0)
  end, "", MAX_INSTRUCTIONS)
  local res = { xpcall(fn, handler) }
  if old_hook then
    debug_sethook(old_hook, old_mask, old_count)
  else
    debug_sethook()
  end
  return unpack(res, 1, 2)
end

-- Runs manifest source text in an empty environment (no io, os, require)
-- and validates what it returns; label names it in errors (a file path),
-- basedir resolves its scripts, default_name names it when it has no name
-- (ignored when it is not a valid name), opts.recorders and opts.injector
-- are validate's. Returns topo, nil or nil, errs.
function _M.load_source(src, label, basedir, default_name, opts)
  if type(src) ~= "string" then
    return nil, { "manifest: expected Lua source text, got " .. show(src) }
  end
  label = label or "manifest"
  if str_byte(src, 1) == 27 then
    return nil, { label .. ": is precompiled bytecode, expected Lua source" }
  end
  src = str_gsub(src, "^#[^\n]*", "") -- a shebang line keeps its line
  local chunkname = "@" .. label
  local fn, serr = loadstring(src, chunkname)
  if not fn then
    return nil, { printable(serr) } -- it quotes the source near the error
  end
  setfenv(fn, sandbox())
  local ok, tbl = run_chunk(fn, chunkname, label)
  if not ok then
    return nil, { printable(tbl) } -- the manifest's own error() text
  end
  if type(tbl) ~= "table" then
    return nil, { str_format("%s: the manifest must return a table, got %s",
                             label, show(tbl)) }
  end
  if default_name and not str_match(default_name, check.NAME_PATTERN) then
    default_name = nil
  end
  return _M.validate(tbl, basedir, { default_name = default_name,
    recorders = opts and opts.recorders, injector = opts and opts.injector })
end

-- Loads the manifest file at path (see load_source); scripts resolve
-- against its directory and its file name names it when it has no name.
-- Returns topo, nil or nil, errs.
function _M.load(path)
  if type(path) ~= "string" or path == "" then
    return nil, { "manifest: expected a file path, got " .. show(path) }
  end
  local abs = absolute(path)
  local f, oerr = io_open(abs, "rb")
  if not f then
    return nil, { str_format("%s: cannot read the manifest: %s", path,
                             (str_gsub(oerr or "", "^.-: ", ""))) }
  end
  local src, rerr = f:read("*a")
  f:close()
  if not src then
    return nil, { str_format("%s: cannot read the manifest: %s", path,
                             rerr or "read failed") }
  end
  local stem = str_match(abs, "([^/]+)%.lua$") or str_match(abs, "([^/]+)$")
  if stem and not str_match(stem, check.NAME_PATTERN) then
    stem = nil
  end
  return _M.load_source(src, path, check.dirname(abs), stem)
end

-- The keys a neuron accepts (in the order they are checked), for tools
-- such as the test harness.
_M.NEURON_KEYS = neurons.KEYS

-- Exposed for specs and tools.
_M.defaults = {
  tick_ns = K.TICK_DEFAULT_NS, arena_size = K.ARENA_DEFAULT,
  axon_capacity = K.AXON_DEFAULT, neuron = neurons.IF_DEFAULTS,
  stdp = neurons.STDP_DEFAULTS, isolation = isolation.DEFAULTS,
}

return _M
