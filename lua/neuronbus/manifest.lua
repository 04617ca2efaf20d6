-- neuronbus.manifest: loads and validates a topology manifest.
--
--   local manifest = require("neuronbus.manifest")
--   local topo, errs = manifest.load("agents/demo.lua")
--   local topo, errs = manifest.validate(tbl, basedir)
--   local topo, errs = manifest.load_source(src, label, basedir, default_name)
--
-- Both return the normalized topology and nil, or nil and an array of
-- messages, one per problem, each "key.path: message" (for instance
-- `neurons.parser.threshold: expected a number, got "high"`). Every problem
-- is collected, not just the first. Pure Lua (LuaJIT 2.1), no FFI.
--
-- The normalized topology:
--   { name, tick_ns (0 = free-running), arena = { size, path|nil },
--     axon_capacity, inbox_capacity, prune_every,
--     neurons = { sorted by name; ids follow this order
--       { name, script (absolute), regions, capabilities, threshold, rest,
--         leak, refractory, config } },
--     synapses = { { from, to, weight, stdp = nil | { a_plus, a_minus,
--       tau_plus_ms, tau_minus_ms, w_min, w_max }, filters = { ... } } },
--     transport = nil | { listen, peers, accept, max_payload } }
--   A neuron with `remote` (another process's neuron, reached over TCP) has
--   remote = { url, neuron } | { cortex, neuron } and no script: see
--   neuronbus.transport for those keys.

local units = require("neuronbus.units")
local transport = require("neuronbus.transport")

local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local setfenv = setfenv
local loadstring = loadstring
local getmetatable = getmetatable
local setmetatable = setmetatable
local rawget = rawget
local assert = assert
local pcall = pcall
local xpcall = xpcall
local error = error
local select = select
local unpack = unpack
local tonumber = tonumber
local io_open = io.open
local io_popen = io.popen
local os_getenv = os.getenv
local floor = math.floor
local huge = math.huge
local str_format = string.format
local str_match = string.match
local str_sub = string.sub
local str_byte = string.byte
local str_gsub = string.gsub
local tbl_concat = table.concat
local tbl_sort = table.sort
local debug_sethook = debug.sethook
local debug_gethook = debug.gethook
local debug_getinfo = debug.getinfo
local math_lib, string_lib, table_lib = math, string, table
local jit = rawget(_G, "jit") -- nil outside LuaJIT

local show = units.show
local isolation = require("neuronbus.isolation")

local _M = { _VERSION = "0.1.0" }

-- Limits and defaults (mirroring core/*.h).
local MAX_NEURONS = 65535         -- ids 0..0xFFFE, 0xFFFF is broadcast
local MAX_TAGS = 16               -- NB_CARD_MAX_TAGS
local MAX_PREFIX = 16             -- NB_FILTER_PREFIX_MAX
local MAX_FILTER_NAME = 31        -- NB_FILTER_NAME_MAX minus the NUL
local MAX_AXON = 16777216         -- 2^24 slots (1 GiB of spikes) per neuron
local MAX_U32 = 4294967295
local MAX_INSTRUCTIONS = 50000000 -- a manifest that runs longer is stuck

local DEFAULT_TICK_NS = 1000000   -- "1ms"
local DEFAULT_ARENA = 16 * 1024 * 1024
local DEFAULT_AXON = 4096

local IF_DEFAULTS = { threshold = 1.0, rest = 0.0, leak = 0.95, refractory = 2 }
local STDP_DEFAULTS = {
  a_plus = 0.01, a_minus = 0.012, tau_plus_ms = 20, tau_minus_ms = 20,
  w_min = 0.001, w_max = 1.0,
}
local KINDS = { "excitatory", "inhibitory", "modulatory" }

local NAME_PATTERN = "^[%w_%-%.]+$"
local TAG_PATTERN = "^[%w_%-%.:/]+$"

-- The keys each table accepts.
local KEYS = {
  top = { "name", "tick", "arena", "axon", "prune_every", "neurons",
          "synapses" },
  arena = { "size", "path" },
  axon = { "capacity", "inbox" },
  neuron = { "script", "region", "regions", "capabilities", "threshold",
             "rest", "leak", "refractory", "config", "description" },
  synapse = { "from", "to", "weight", "stdp", "filters" },
  stdp = { "a_plus", "a_minus", "tau_plus", "tau_minus", "w_min", "w_max" },
  filters = { "kind", "priority", "prefix", "custom" },
}

-- The TCP keys (listen, peers, accept, max_payload, a neuron's remote):
-- checked by neuronbus.transport.
for _, k in ipairs(transport.TOP_KEYS) do
  KEYS.top[#KEYS.top + 1] = k
end
KEYS.neuron[#KEYS.neuron + 1] = "remote"
for what, list in pairs(transport.KEYS) do
  KEYS[what] = list
end

------------------------------------------------------------------------
-- small helpers
------------------------------------------------------------------------

local function set_of(list)
  local s = {}
  for i = 1, #list do
    s[list[i]] = true
  end
  return s
end

-- The fault isolation keys of a neuron (memory, budget, jit, watchdog,
-- sandbox, require, policy, on_error, restart): neuronbus.isolation.
for _, k in ipairs(isolation.NEURON_KEYS) do
  KEYS.neuron[#KEYS.neuron + 1] = k
end
for what, list in pairs(isolation.KEYS) do
  KEYS[what] = list
end

local KEY_SETS = {}
for what, list in pairs(KEYS) do
  local sorted = { unpack(list) }
  tbl_sort(sorted)
  KEY_SETS[what] = { set = set_of(list), text = tbl_concat(sorted, ", ") }
end
local KIND_SET = set_of(KINDS)

-- Appends key to a path: "neurons" .. "x" = "neurons.x", "synapses" .. 2 =
-- "synapses[2]"; keys that are neither strings nor numbers show as [type].
local function join(path, key)
  local t = type(key)
  if t == "number" then
    return path .. "[" .. tostring(key) .. "]"
  elseif t ~= "string" then
    return path .. "[" .. show(key) .. "]"
  elseif path == "" then
    return key
  end
  return path .. "." .. key
end

local function is_finite(n)
  return n == n and n ~= huge and n ~= -huge
end

local function is_integer(n)
  return is_finite(n) and n == floor(n)
end

-- Orders mixed keys: numbers by value, then strings, then the rest.
local KEY_RANK = { number = 1, string = 2 }
local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return (KEY_RANK[ta] or 3) < (KEY_RANK[tb] or 3)
  end
  if ta == "number" or ta == "string" then
    return a < b
  end
  return tostring(a) < tostring(b)
end

-- Returns the keys of t sorted with key_less, so messages come out in a
-- stable order.
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = k
  end
  tbl_sort(keys, key_less)
  return keys
end

-- Levenshtein distance, for "did you mean" hints on short words.
local function distance(a, b)
  local la, lb = #a, #b
  local prev = {}
  for j = 0, lb do
    prev[j] = j
  end
  for i = 1, la do
    local cur = { [0] = i }
    local ca = str_byte(a, i)
    for j = 1, lb do
      local cost = ca == str_byte(b, j) and 0 or 1
      local d = prev[j] + 1
      if cur[j - 1] + 1 < d then d = cur[j - 1] + 1 end
      if prev[j - 1] + cost < d then d = prev[j - 1] + cost end
      cur[j] = d
    end
    prev = cur
  end
  return prev[lb]
end

-- Returns the candidate closest to word (distance <= 2), or nil.
local function suggest(word, candidates)
  if type(word) ~= "string" then
    return nil
  end
  local best, best_d = nil, 3
  for i = 1, #candidates do
    local d = distance(word, candidates[i])
    if d < best_d and d < #word then
      best, best_d = candidates[i], d
    end
  end
  return best
end

-- Returns true when t is a non-empty sequence 1..n with nothing else.
local function is_array(t)
  local n = #t
  local count = 0
  for _ in pairs(t) do
    count = count + 1
  end
  return count == n
end

------------------------------------------------------------------------
-- paths
------------------------------------------------------------------------

local cwd_cache

-- Returns the working directory (PWD, else `pwd`).
local function cwd()
  if cwd_cache then
    return cwd_cache
  end
  local pwd = os_getenv("PWD")
  if not (pwd and str_sub(pwd, 1, 1) == "/") then
    local p = io_popen and io_popen("pwd")
    pwd = p and p:read("*l")
    if p then p:close() end
  end
  cwd_cache = pwd or "/"
  return cwd_cache
end

-- Collapses "//", "/./" and "dir/.." in an absolute path.
local function normalize(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then
      if #parts > 0 then
        parts[#parts] = nil
      end
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return "/" .. tbl_concat(parts, "/")
end

-- Returns path made absolute against base (itself made absolute).
local function absolute(path, base)
  if str_sub(path, 1, 1) == "/" then
    return normalize(path)
  end
  base = base or cwd()
  if str_sub(base, 1, 1) ~= "/" then
    base = cwd() .. "/" .. base
  end
  return normalize(base .. "/" .. path)
end
_M.absolute = absolute

local function dirname(path)
  return str_match(path, "^(.*)/[^/]*$") or "."
end

-- Returns true, or nil and why, for a regular readable file.
local function readable_file(path)
  local f, err = io_open(path, "rb")
  if not f then
    return nil, (str_gsub(err or "cannot open", "^.-: ", ""))
  end
  local ok, rerr = f:read(0)
  f:close()
  if ok == nil and rerr then
    return nil, rerr
  end
  return true
end

------------------------------------------------------------------------
-- the checker: a context that collects errors
------------------------------------------------------------------------

local Checker = {}
Checker.__index = Checker

local function new_checker(basedir)
  return setmetatable({ errs = {}, basedir = basedir }, Checker)
end

function Checker:fail(path, fmt, ...)
  local msg = select("#", ...) > 0 and str_format(fmt, ...) or fmt
  self.errs[#self.errs + 1] = (path == "" and "manifest" or path) .. ": " .. msg
  return nil
end

-- Reports a wrong type: "expected a number, got "high"".
function Checker:wrong(path, what, v)
  return self:fail(path, "expected %s, got %s", what, show(v))
end

-- Reports every key of t not in the set for what, with a hint.
function Checker:keys(path, t, what)
  local ks = KEY_SETS[what]
  for _, k in ipairs(sorted_keys(t)) do
    if not ks.set[k] then
      local hint = suggest(k, KEYS[what])
      if hint then
        self:fail(join(path, k), 'unknown key, did you mean "%s"? (allowed: %s)',
                  hint, ks.text)
      else
        self:fail(join(path, k), "unknown key (allowed: %s)", ks.text)
      end
    end
  end
end

-- Returns t when it is a table (or nil when absent and optional), else
-- reports and returns false.
function Checker:table(path, t, optional)
  if t == nil and optional then
    return nil
  end
  if type(t) ~= "table" then
    self:wrong(path, "a table", t)
    return false
  end
  return t
end

-- Returns a finite number in [lo, hi] (bounds optional; open_lo excludes
-- lo), the default when v is nil, or nil after reporting.
function Checker:number(path, v, default, lo, hi, open_lo)
  if v == nil then
    return default
  end
  if type(v) ~= "number" then
    return self:wrong(path, "a number", v)
  end
  if not is_finite(v) then
    return self:fail(path, "expected a finite number, got %s", show(v))
  end
  if lo and (v < lo or (open_lo and v == lo)) or hi and v > hi then
    local range
    if lo and hi then
      range = str_format("%s%s, %s]", open_lo and "(" or "[", show(lo), show(hi))
      return self:fail(path, "%s is out of range, expected a number in %s",
                       show(v), range)
    elseif lo then
      return self:fail(path, "%s is out of range, expected a number %s %s",
                       show(v), open_lo and ">" or ">=", show(lo))
    end
    return self:fail(path, "%s is out of range, expected a number <= %s",
                     show(v), show(hi))
  end
  return v
end

-- Returns an integer in [lo, hi], the default when v is nil, or nil.
function Checker:integer(path, v, default, lo, hi)
  if v == nil then
    return default
  end
  if type(v) ~= "number" then
    return self:wrong(path, "an integer", v)
  end
  if not is_integer(v) then
    return self:fail(path, "expected an integer, got %s", show(v))
  end
  if v < lo or v > hi then
    return self:fail(path, "%s is out of range, expected an integer from %d to %d",
                     show(v), lo, hi)
  end
  return v
end

-- Returns a name (non-empty, letters, digits, _ - .), or nil.
function Checker:name(path, v, what)
  if type(v) ~= "string" then
    return self:wrong(path, what or "a name", v)
  end
  if not str_match(v, NAME_PATTERN) then
    return self:fail(path, "bad name %s: use letters, digits, _, - and . only",
                     show(v))
  end
  return v
end

-- Returns a normalized list of tags from a string or a list of strings.
function Checker:tags(path, v, what)
  local was_list = type(v) == "table"
  if type(v) == "string" then
    v = { v }
  elseif type(v) ~= "table" or not is_array(v) then
    return self:wrong(path, "a " .. what .. " or a list of them", v)
  end
  if #v > MAX_TAGS then
    return self:fail(path, "%d entries, at most %d are allowed", #v, MAX_TAGS)
  end
  local out, seen, ok = {}, {}, true
  for i = 1, #v do
    local tag = v[i]
    local p = was_list and join(path, i) or path
    if type(tag) ~= "string" then
      ok = self:wrong(p, "a " .. what, tag) and ok
    elseif what == "region" and str_match(tag, "^/") then
      ok = self:fail(p, "bad region %s: regions are relative paths like \"demo/input\"",
                     show(tag))
    else
      local trimmed = str_gsub(tag, "/+$", "")
      if trimmed == "" or not str_match(trimmed, TAG_PATTERN)
          or str_match(trimmed, "//") then
        ok = self:fail(p, "bad %s %s: use letters, digits, _ - . : and single /",
                       what, show(tag))
      elseif seen[trimmed] then
        ok = self:fail(p, "duplicate %s %s", what, show(tag))
      else
        seen[trimmed] = true
        out[#out + 1] = trimmed
      end
    end
  end
  return ok and out or nil
end

-- Returns a duration in ns (> 0), or nil.
function Checker:duration(path, v)
  local ns, err = units.duration(v)
  if not ns then
    return self:fail(path, err)
  end
  if ns <= 0 then
    return self:fail(path, "expected a duration above zero, got %s", show(v))
  end
  return ns
end

-- Deep-copies plain data (strings, numbers, booleans, tables of them),
-- reporting functions, userdata, threads, metatables and cycles.
function Checker:plain(path, v, seen)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then
    return v
  end
  if t ~= "table" then
    return self:fail(path, "expected plain data (string, number, boolean or "
                     .. "table), got a %s", t)
  end
  if getmetatable(v) ~= nil then
    return self:fail(path, "expected plain data, got a table with a metatable")
  end
  if seen[v] then
    return self:fail(path, "a cycle: this table contains itself")
  end
  seen[v] = true
  local out = {}
  for _, k in ipairs(sorted_keys(v)) do
    local kt = type(k)
    if kt ~= "string" and not (kt == "number" and is_finite(k))
        and kt ~= "boolean" then
      self:fail(join(path, k), "expected a string or number key, got a %s", kt)
    else
      out[k] = self:plain(join(path, k), v[k], seen)
    end
  end
  seen[v] = nil -- a table shared by two branches is fine, a cycle is not
  return out
end

------------------------------------------------------------------------
-- sections
------------------------------------------------------------------------

local function check_tick(c, v)
  if v == nil then
    return DEFAULT_TICK_NS
  end
  if v == "free" then
    return 0
  end
  if type(v) ~= "string" and type(v) ~= "number" then
    return c:wrong("tick", 'a duration like "1ms" or "free"', v)
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

local function check_arena(c, v)
  local out = { size = DEFAULT_ARENA }
  local t = c:table("arena", v, true)
  if not t then
    return out
  end
  c:keys("arena", t, "arena")
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

local function is_pow2(n)
  while n > 1 and n % 2 == 0 do
    n = n / 2
  end
  return n == 1
end

local function check_axon(c, v)
  local t = c:table("axon", v, true)
  if not t then
    return DEFAULT_AXON, DEFAULT_AXON
  end
  c:keys("axon", t, "axon")
  local cap = c:integer("axon.capacity", t.capacity, DEFAULT_AXON, 2, MAX_AXON)
  if cap and not is_pow2(cap) then
    cap = c:fail("axon.capacity", "%s is not a power of two (2, 4, 8, ... %d)",
                 show(cap), MAX_AXON)
  end
  local inbox = c:integer("axon.inbox", t.inbox, cap or DEFAULT_AXON, 1, MAX_AXON)
  return cap or DEFAULT_AXON, inbox or DEFAULT_AXON
end

local function check_script(c, path, v)
  if v == nil then
    return c:fail(path, "missing (the agent's Lua file, relative to the manifest)")
  end
  if type(v) ~= "string" or v == "" then
    return c:wrong(path, "a script path", v)
  end
  local abs = absolute(v, c.basedir)
  local ok, why = readable_file(abs)
  if not ok then
    return c:fail(path, "cannot read script %s: %s", abs, why)
  end
  return abs
end

local function check_neuron(c, name, spec)
  local path = join("neurons", name)
  local t = c:table(path, spec)
  if not t then
    return nil
  end
  c:keys(path, t, "neuron")
  local n = { name = name }
  if t.remote ~= nil then
    -- A proxy for a neuron of another process (neuronbus.transport).
    n.remote = transport.check_remote(c, path, t, { join = join })
  else
    n.script = check_script(c, join(path, "script"), t.script)
  end

  if t.region ~= nil and t.regions ~= nil then
    c:fail(join(path, "regions"), "give region or regions, not both")
  end
  local rkey = t.regions ~= nil and "regions" or "region"
  n.regions = t[rkey] == nil and {} or c:tags(join(path, rkey), t[rkey], "region")
  n.capabilities = t.capabilities == nil and {}
    or c:tags(join(path, "capabilities"), t.capabilities, "capability")

  n.threshold = c:number(join(path, "threshold"), t.threshold, IF_DEFAULTS.threshold)
  n.rest = c:number(join(path, "rest"), t.rest, IF_DEFAULTS.rest)
  n.leak = c:number(join(path, "leak"), t.leak, IF_DEFAULTS.leak, 0, 1)
  n.refractory = c:integer(join(path, "refractory"), t.refractory,
                           IF_DEFAULTS.refractory, 0, MAX_U32)
  if t.description ~= nil then
    local dp = join(path, "description")
    if type(t.description) ~= "string" then
      c:wrong(dp, "a string (free text)", t.description)
    elseif #t.description > 256 then
      c:fail(dp, "%d bytes, at most 256 are allowed", #t.description)
    elseif str_match(t.description, "%c") then
      c:fail(dp, "one line of text expected, got a control character (a "
             .. "newline?)")
    else
      n.description = t.description
    end
  end
  if t.config == nil then
    n.config = {}
  elseif c:table(join(path, "config"), t.config) then
    n.config = c:plain(join(path, "config"), t.config, {})
  end
  isolation.check(c, path, t, n, { join = join, suggest = suggest,
                                   is_array = is_array })
  return n
end

local function check_neurons(c, v)
  if v == nil then
    c:fail("neurons", "missing (a map of name = { script = ... })")
    return {}, {}
  end
  local t = c:table("neurons", v)
  if not t then
    return {}, {}
  end
  local list, known = {}, {}
  for _, name in ipairs(sorted_keys(t)) do
    if type(name) ~= "string" then
      c:fail(join("neurons", name), "neurons is a map of name = { script = ... },"
             .. " got an entry without a name")
    elseif c:name(join("neurons", name), name, "a neuron name") then
      known[name] = true
      local n = check_neuron(c, name, t[name])
      if n then
        list[#list + 1] = n
      end
    end
  end
  if next(t) == nil then
    c:fail("neurons", "expected at least one neuron")
  elseif #list > MAX_NEURONS then
    c:fail("neurons", "%d neurons, at most %d are allowed", #list, MAX_NEURONS)
  end
  return list, known
end

local function check_stdp(c, path, v)
  if v == nil or v == false then
    return nil
  end
  if v == true then
    v = {}
  elseif type(v) ~= "table" then
    return c:wrong(path, "true, false or a table of STDP parameters", v)
  end
  c:keys(path, v, "stdp")
  local d = STDP_DEFAULTS
  local s = {
    a_plus = c:number(join(path, "a_plus"), v.a_plus, d.a_plus, 0),
    a_minus = c:number(join(path, "a_minus"), v.a_minus, d.a_minus, 0),
    tau_plus_ms = d.tau_plus_ms,
    tau_minus_ms = d.tau_minus_ms,
    w_min = c:number(join(path, "w_min"), v.w_min, d.w_min, 0, 1),
    w_max = c:number(join(path, "w_max"), v.w_max, d.w_max, 0, 1, true),
  }
  for _, k in ipairs({ "tau_plus", "tau_minus" }) do
    if v[k] ~= nil then
      local ns = c:duration(join(path, k), v[k])
      s[k .. "_ms"] = ns and ns / 1e6 or nil
    end
  end
  if s.w_min and s.w_max and s.w_min >= s.w_max then
    c:fail(join(path, "w_min"), "%s must be below w_max %s", show(s.w_min),
           show(s.w_max))
  end
  return s
end

local function check_kinds(c, path, v)
  local list = type(v) == "table" and v or { v }
  if type(v) ~= "string" and (type(v) ~= "table" or not is_array(v) or #v == 0) then
    return c:wrong(path, "a kind or a list of kinds (excitatory, inhibitory, "
                   .. "modulatory)", v)
  end
  local given, ok = {}, true
  for i = 1, #list do
    local k = list[i]
    local p = type(v) == "table" and join(path, i) or path
    if not KIND_SET[k] then
      local hint = suggest(k, KINDS)
      ok = c:fail(p, "unknown kind %s%s (expected excitatory, inhibitory or "
                  .. "modulatory)", show(k),
                  hint and str_format(', did you mean "%s"?', hint) or "")
    else
      given[k] = true
    end
  end
  if not ok then
    return nil
  end
  local kinds = {}
  for i = 1, #KINDS do
    if given[KINDS[i]] then
      kinds[#kinds + 1] = KINDS[i]
    end
  end
  return { type = "kind", kinds = kinds }
end

local function check_filters(c, path, v)
  if v == nil then
    return {}
  end
  if type(v) ~= "table" then
    return c:wrong(path, "a table of filters (kind, priority, prefix, custom)", v)
  end
  c:keys(path, v, "filters")
  local out = {}
  if v.kind ~= nil then
    out[#out + 1] = check_kinds(c, join(path, "kind"), v.kind)
  end
  if v.priority ~= nil then
    local p = c:integer(join(path, "priority"), v.priority, nil, 0, 255)
    out[#out + 1] = p and { type = "priority", min = p } or nil
  end
  if v.prefix ~= nil then
    local pp = join(path, "prefix")
    if type(v.prefix) ~= "string" then
      c:wrong(pp, "a string", v.prefix)
    elseif #v.prefix == 0 or #v.prefix > MAX_PREFIX then
      c:fail(pp, "%s is %d bytes, expected 1 to %d", show(v.prefix), #v.prefix,
             MAX_PREFIX)
    else
      out[#out + 1] = { type = "prefix", prefix = v.prefix }
    end
  end
  if v.custom ~= nil then
    local pc = join(path, "custom")
    local name = c:name(pc, v.custom, "the name of a filter the target exports")
    if name and #name > MAX_FILTER_NAME then
      c:fail(pc, "%s is %d bytes, at most %d are allowed", show(name), #name,
             MAX_FILTER_NAME)
    elseif name then
      out[#out + 1] = { type = "custom", name = name }
    end
  end
  return out
end

local function check_endpoint(c, path, v, known)
  if v == nil then
    return c:fail(path, "missing (the name of a neuron)")
  end
  if type(v) ~= "string" then
    return c:wrong(path, "a neuron name", v)
  end
  if not known[v] then
    local names = sorted_keys(known)
    local hint = suggest(v, names)
    return c:fail(path, "unknown neuron %s%s (neurons: %s)", show(v),
                  hint and str_format(', did you mean "%s"?', hint) or "",
                  #names > 0 and tbl_concat(names, ", ") or "none")
  end
  return v
end

local function check_synapse(c, i, spec, known, pairs_seen)
  local path = join("synapses", i)
  local t = c:table(path, spec)
  if not t then
    return nil
  end
  c:keys(path, t, "synapse")
  local from = check_endpoint(c, join(path, "from"), t.from, known)
  local to = check_endpoint(c, join(path, "to"), t.to, known)
  if from and to and from == to then
    c:fail(join(path, "to"), "a synapse cannot join %s to itself", show(from))
    from = nil
  elseif from and to then
    local pair = from .. "\0" .. to
    if pairs_seen[pair] then
      c:fail(path, "duplicate synapse %s -> %s (first given as synapses[%d])",
             from, to, pairs_seen[pair])
      from = nil
    else
      pairs_seen[pair] = i
    end
  end
  local s = {
    from = from,
    to = to,
    weight = c:number(join(path, "weight"), t.weight, 1.0, 0, 1, true),
    stdp = check_stdp(c, join(path, "stdp"), t.stdp),
    filters = check_filters(c, join(path, "filters"), t.filters),
  }
  return from and to and s or nil
end

local function check_synapses(c, v, known)
  if v == nil then
    return {}
  end
  if type(v) ~= "table" then
    c:wrong("synapses", "a list of synapses", v)
    return {}
  end
  local out, pairs_seen = {}, {}
  for _, k in ipairs(sorted_keys(v)) do
    if type(k) ~= "number" or k < 1 or k > #v or not is_integer(k) then
      c:fail(join("synapses", k), "synapses is a list { { from = ..., to = ... }, "
             .. "... }, got a keyed entry")
    end
  end
  for i = 1, #v do
    out[#out + 1] = check_synapse(c, i, v[i], known, pairs_seen)
  end
  return out
end

------------------------------------------------------------------------
-- public API
------------------------------------------------------------------------

-- Validates a manifest table; scripts and a relative arena path resolve
-- against basedir (default: the working directory). opts.default_name
-- names a manifest without a name. Returns topo, nil or nil, errs.
function _M.validate(tbl, basedir, opts)
  local c = new_checker(absolute(basedir or ".", nil))
  if type(tbl) ~= "table" then
    c:wrong("", "a table (the manifest)", tbl)
    return nil, c.errs
  end
  c:keys("", tbl, "top")
  local topo = {}
  local name = tbl.name
  if name == nil then
    name = opts and opts.default_name
  end
  if name == nil then
    c:fail("name", "missing (the topology's name)")
  else
    topo.name = c:name("name", name, "a name")
  end
  topo.tick_ns = check_tick(c, tbl.tick)
  topo.arena = check_arena(c, tbl.arena)
  topo.axon_capacity, topo.inbox_capacity = check_axon(c, tbl.axon)
  topo.prune_every = c:integer("prune_every", tbl.prune_every, 0, 0, MAX_U32)
  local known
  topo.neurons, known = check_neurons(c, tbl.neurons)
  -- The test harness's recorder neurons (no script: they keep what they
  -- are sent): recorders take their place in name order, as ids follow
  -- names; after ones come last, in the order given.
  for _, which in ipairs({ "recorders", "after" }) do
    local list = opts and opts[which]
    for i = 1, list and #list or 0 do
      local r = list[i]
      if known[r] then
        c:fail(join("neurons", r), "is also the name of a recorder (peers)")
      elseif c:name(str_format("%s[%d]", which, i), r, "a neuron name") then
        known[r] = true
        topo.neurons[#topo.neurons + 1] = { name = r, recorder = true,
          regions = {}, capabilities = {} }
      end
    end
    if which == "recorders" then
      tbl_sort(topo.neurons, function(a, b) return a.name < b.name end)
    end
  end
  topo.synapses = check_synapses(c, tbl.synapses, known)
  topo.transport = transport.check(c, tbl, topo, {
    join = join, suggest = suggest, is_array = is_array })
  if #c.errs > 0 then
    return nil, c.errs
  end
  return topo
end

-- Functions a manifest may call: pure ones only (no io, os, require, load,
-- debug). Copies, so a manifest cannot change the host's libraries.
local function copy_lib(lib)
  local t = {}
  for k, v in pairs(lib) do
    t[k] = v
  end
  return t
end

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
-- basedir resolves its scripts, default_name names it when it has no name.
-- Returns topo, nil or nil, errs.
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
    return nil, { serr }
  end
  setfenv(fn, sandbox())
  local ok, tbl = run_chunk(fn, chunkname, label)
  if not ok then
    return nil, { tbl }
  end
  if type(tbl) ~= "table" then
    return nil, { str_format("%s: the manifest must return a table, got %s",
                             label, show(tbl)) }
  end
  if default_name and not str_match(default_name, NAME_PATTERN) then
    default_name = nil
  end
  return _M.validate(tbl, basedir, { default_name = default_name,
    recorders = opts and opts.recorders, after = opts and opts.after })
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
  if stem and not str_match(stem, NAME_PATTERN) then
    stem = nil
  end
  return _M.load_source(src, path, dirname(abs), stem)
end

-- Exposed for specs and tools.
_M.defaults = {
  tick_ns = DEFAULT_TICK_NS, arena_size = DEFAULT_ARENA,
  axon_capacity = DEFAULT_AXON, neuron = IF_DEFAULTS, stdp = STDP_DEFAULTS,
}

return _M
