-- neuronbus.manifest.neurons: the neurons of a manifest (every key of a
-- neuron is one schema entry below, or one in neuronbus.manifest.isolation
-- or neuronbus.manifest.links), the test harness's recorders, and the
-- synapses with their STDP and filters. Pure Lua, no FFI.

local units = require("neuronbus.units")
local check = require("neuronbus.manifest.check")
local isolation = require("neuronbus.manifest.isolation")
local links = require("neuronbus.manifest.links")
local workers = require("neuronbus.manifest.workers")

local type, ipairs, pairs, next = type, ipairs, pairs, next
local str_format, str_find = string.format, string.find
local tbl_concat, tbl_sort = table.concat, table.sort
local show = units.show
local join, suggest, sorted_keys, K = check.join, check.suggest, check.sorted_keys, check.K

local _M = {}

-- Integrate-and-fire defaults (core's nb_if_params_default()).
_M.IF_DEFAULTS = { threshold = 1.0, rest = 0.0, leak = 0.95, refractory = 2 }
-- STDP defaults: core/nb_synapse.h's NB_STDP_DEFAULT_*, through the
-- generated layout.
_M.STDP_DEFAULTS = {
  mode = "pair",
  a_plus = K.STDP_DEFAULT_A_PLUS, a_minus = K.STDP_DEFAULT_A_MINUS,
  tau_plus_ms = K.STDP_DEFAULT_TAU_PLUS_MS,
  tau_minus_ms = K.STDP_DEFAULT_TAU_MINUS_MS,
  w_min = K.STDP_DEFAULT_W_MIN, w_max = K.STDP_DEFAULT_W_MAX,
  lambda = K.STDP_DEFAULT_LAMBDA, alpha = K.STDP_DEFAULT_ALPHA,
  mu_plus = K.STDP_DEFAULT_MU_PLUS, mu_minus = K.STDP_DEFAULT_MU_MINUS,
  tau_c_ms = K.STDP_DEFAULT_TAU_C_MS, tau_n_ms = K.STDP_DEFAULT_TAU_N_MS,
  baseline = K.STDP_DEFAULT_BASELINE,
}
-- The learning modes by manifest name, and their C values.
_M.STDP_MODES = { "pair", "trace", "reward" }
_M.STDP_MODE_CODES = { pair = K.STDP_PAIR, trace = K.STDP_TRACE, reward = K.STDP_REWARD }
local IF = _M.IF_DEFAULTS

-- Returns the absolute path of the script v (at path, relative to the
-- manifest's directory), or nil after reporting.
local function check_script(c, path, v, t)
  if t.remote ~= nil then
    return nil -- a remote neuron refuses a script (neuronbus.manifest.links)
  end
  if type(v) ~= "string" or v == "" then
    return c:wrong(path, "a script path", v)
  end
  local abs = check.absolute(v, c.basedir)
  local ok, why = check.readable_file(abs)
  if not ok then
    return c:fail(path, "cannot read script %s: %s", abs, why)
  end
  return abs
end

-- Returns the description v (one line of free text), or nil after
-- reporting.
local function check_description(c, path, v)
  if type(v) ~= "string" then
    return c:wrong(path, "a string (free text)", v)
  end
  if #v > K.DESCRIPTION_MAX then
    return c:fail(path, "%d bytes, at most %d are allowed", #v, K.DESCRIPTION_MAX)
  end
  if str_find(v, "%c") then
    return c:fail(path, "one line of text expected, got a control character "
      .. "(a newline?)")
  end
  return v
end

-- The keys of a neuron, one schema entry each (neuronbus.manifest.check),
-- in the order they are checked: remote first, since it decides whether
-- the neuron has a script, then the rest.
_M.ENTRIES = {}
local ENTRIES = _M.ENTRIES
for _, e in ipairs(links.NEURON_ENTRIES) do ENTRIES[#ENTRIES + 1] = e end
for _, e in ipairs({
  { key = "script", check = check_script,
    default = function(c, path, t)
      if t.remote == nil then
        return c:fail(path, "missing (the agent's Lua file, relative to the manifest)")
      end
    end },
  { key = "region", out = "regions",
    check = function(c, path, v) return c:tags(path, v, "region") end },
  { key = "regions", default = {},
    check = function(c, path, v, t)
      if t.region ~= nil then
        return c:fail(path, "give region or regions, not both")
      end
      return c:tags(path, v, "region")
    end },
  { key = "capabilities", default = {},
    check = function(c, path, v) return c:tags(path, v, "capability") end },
  { key = "description", check = check_description },
  { key = "threshold", default = IF.threshold,
    check = function(c, path, v) return c:number(path, v) end },
  { key = "rest", default = IF.rest,
    check = function(c, path, v) return c:number(path, v) end },
  { key = "leak", default = IF.leak,
    check = function(c, path, v) return c:number(path, v, nil, 0, 1) end },
  { key = "refractory", default = IF.refractory,
    check = function(c, path, v) return c:integer(path, v, nil, 0, check.MAX_U32) end },
  -- nb:connect / nb:disconnect may change any neuron's synapses, not only
  -- the agent's own outgoing ones.
  { key = "rewire", default = false,
    check = function(c, path, v) return c:boolean(path, v) end },
  { key = "config", default = {},
    check = function(c, path, v)
      if c:table(path, v) then return c:plain(path, v, {}) end
    end },
}) do
  ENTRIES[#ENTRIES + 1] = e
end
for _, e in ipairs(isolation.ENTRIES) do ENTRIES[#ENTRIES + 1] = e end
for _, e in ipairs(workers.NEURON_ENTRIES) do ENTRIES[#ENTRIES + 1] = e end

-- The keys a neuron accepts.
_M.KEYS = check.keys_of(ENTRIES)

-- Returns the normalized neuron name from spec (at neurons.name), or nil.
local function check_neuron(c, name, spec)
  local path = join("neurons", name)
  local t = c:table(path, spec)
  if not t then
    return nil
  end
  c:keys(path, t, _M.KEYS)
  return check.apply(c, path, t, { name = name }, ENTRIES)
end

-- Adds the recorders named in list (the test harness's neurons that keep
-- what they receive and never fire) to out and known; a name taken by a
-- neuron or given twice is reported.
local function add_recorders(c, list, out, known)
  if type(list) ~= "table" or not check.is_array(list) then
    c:wrong("recorders", "a list of recorder names", list)
    return
  end
  local given = {}
  for i, r in ipairs(list) do
    local path = join("recorders", i)
    if c:name(path, r, "a recorder name") then
      if given[r] then
        c:fail(path, "%s is named twice (first as recorders[%d])", show(r), given[r])
      elseif known[r] then
        c:fail(path, "%s is a neuron of the manifest (neurons.%s), it cannot "
          .. "also be a recorder", show(r), r)
      else
        given[r] = i
        out[#out + 1] = { name = r, recorder = true, regions = {}, capabilities = {} }
      end
    end
  end
  for r in pairs(given) do known[r] = true end
end

-- Checks the neurons map v; returns the normalized list (sorted by name,
-- with the recorders of opts; opts.injector last) and the set of known
-- names.
function _M.check_neurons(c, v, opts)
  opts = opts or {}
  local list, known = {}, {}
  if v == nil then
    c:fail("neurons", "missing (a map of name = { script = ... })")
  elseif c:table("neurons", v) then
    for _, name in ipairs(sorted_keys(v)) do
      if type(name) ~= "string" then
        c:fail(join("neurons", name), "neurons is a map of name = { script = ... },"
               .. " got an entry without a name")
      elseif c:name(join("neurons", name), name, "a neuron name") then
        known[name] = true
        local n = check_neuron(c, name, v[name])
        if n then
          list[#list + 1] = n
        end
      end
    end
    if next(v) == nil then
      c:fail("neurons", "expected at least one neuron")
    end
  end
  if opts.recorders ~= nil then
    add_recorders(c, opts.recorders, list, known)
    tbl_sort(list, function(a, b) return a.name < b.name end)
  end
  local inj = opts.injector
  if type(inj) ~= "table" then inj = { inj } end
  for i = 1, #inj do
    local r = inj[i]
    if c:name("injector", r, "a recorder name") and not known[r] then
      known[r] = true
      list[#list + 1] = { name = r, recorder = true, regions = {}, capabilities = {} }
    end
  end
  if #list > K.MAX_NEURONS then
    c:fail("neurons", "%d neurons, at most %d are allowed", #list, K.MAX_NEURONS)
  end
  return list, known
end

------------------------------------------------------------------------
-- synapses
------------------------------------------------------------------------

-- The keys of a synapse and of its stdp table.
_M.SYNAPSE_KEYS = { "from", "to", "weight", "stdp", "filters" }
_M.STDP_KEYS = { "mode", "a_plus", "a_minus", "tau_plus", "tau_minus", "w_min", "w_max",
  "lambda", "alpha", "mu_plus", "mu_minus", "tau_c", "tau_n", "baseline" }

-- Returns the normalized stdp of v at path (nil: none), or nil after
-- reporting.
local function check_stdp(c, path, v)
  if v == nil or v == false then
    return nil
  end
  if v == true then
    v = {}
  elseif type(v) == "string" and _M.STDP_MODE_CODES[v] then
    v = { mode = v } -- stdp = "reward": a mode with every default
  elseif type(v) ~= "table" then
    return c:wrong(path, 'true, false, "pair", "trace", "reward" or a table of STDP parameters', v)
  end
  c:keys(path, v, _M.STDP_KEYS)
  local d = _M.STDP_DEFAULTS
  local mode = v.mode == nil and d.mode or c:one_of(join(path, "mode"), v.mode, _M.STDP_MODES)
  local s = {
    mode = mode,
    mode_code = mode and _M.STDP_MODE_CODES[mode],
    a_plus = c:number(join(path, "a_plus"), v.a_plus, d.a_plus, 0),
    a_minus = c:number(join(path, "a_minus"), v.a_minus, d.a_minus, 0),
    tau_plus_ms = d.tau_plus_ms,
    tau_minus_ms = d.tau_minus_ms,
    w_min = c:number(join(path, "w_min"), v.w_min, d.w_min, 0, 1),
    w_max = c:number(join(path, "w_max"), v.w_max, d.w_max, 0, 1, true),
    lambda = c:number(join(path, "lambda"), v.lambda, d.lambda, 0),
    alpha = c:number(join(path, "alpha"), v.alpha, d.alpha, 0),
    mu_plus = c:number(join(path, "mu_plus"), v.mu_plus, d.mu_plus, 0),
    mu_minus = c:number(join(path, "mu_minus"), v.mu_minus, d.mu_minus, 0),
    tau_c_ms = d.tau_c_ms,
    tau_n_ms = d.tau_n_ms,
    baseline = c:number(join(path, "baseline"), v.baseline, d.baseline),
  }
  for _, k in ipairs({ "tau_plus", "tau_minus", "tau_c", "tau_n" }) do
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
_M.check_stdp = check_stdp -- nb:connect's opts.stdp (neuronbus.synapses)

local KINDS = { "excitatory", "inhibitory", "modulatory" }
local KIND_SET = check.set_of(KINDS)

-- Returns the kind filter of v (a kind or a list of them) at path, or nil
-- after reporting.
local function check_kinds(c, path, v)
  local list = type(v) == "table" and v or { v }
  if type(v) ~= "string" and (type(v) ~= "table" or not check.is_array(v) or #v == 0) then
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

-- The filters of a synapse, one schema entry each: check returns the
-- normalized filter { type = ..., ... }. They run in this order, cheapest
-- first (a custom filter calls into the target's Lua state).
_M.FILTER_ENTRIES = {
  { key = "kind", check = check_kinds },
  { key = "priority",
    check = function(c, path, v)
      local p = c:integer(path, v, nil, 0, 255)
      return p and { type = "priority", min = p } or nil
    end },
  { key = "prefix",
    check = function(c, path, v)
      if type(v) ~= "string" then
        return c:wrong(path, "a string", v)
      elseif #v == 0 or #v > K.FILTER_PREFIX_MAX then
        return c:fail(path, "%s is %d bytes, expected 1 to %d", show(v), #v,
                      K.FILTER_PREFIX_MAX)
      end
      return { type = "prefix", prefix = v }
    end },
  { key = "custom",
    check = function(c, path, v)
      local name = c:name(path, v, "the name of a filter the target exports")
      if name and #name >= K.FILTER_NAME_MAX then
        return c:fail(path, "%s is %d bytes, at most %d are allowed", show(name),
                      #name, K.FILTER_NAME_MAX - 1)
      end
      return name and { type = "custom", name = name } or nil
    end },
}
_M.FILTER_KEYS = check.keys_of(_M.FILTER_ENTRIES)

-- Returns the normalized filters of v at path: a list in FILTER_ENTRIES
-- order, each with path, the key path the user wrote.
local function check_filters(c, path, v)
  if v == nil then
    return {}
  end
  if type(v) ~= "table" then
    return c:wrong(path, "a table of filters (kind, priority, prefix, custom)", v)
  end
  c:keys(path, v, _M.FILTER_KEYS)
  local out = {}
  for _, e in ipairs(_M.FILTER_ENTRIES) do
    if v[e.key] ~= nil then
      local fp = join(path, e.key)
      local f = e.check(c, fp, v[e.key], v)
      if f then
        f.path = fp
        out[#out + 1] = f
      end
    end
  end
  return out
end
_M.check_filters = check_filters -- nb:connect's opts.filters

-- Returns the neuron name v at path when it is in known, or nil after
-- reporting (with a hint).
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

-- Returns synapse i (spec) normalized, or nil after reporting; pairs_seen
-- maps "from\0to" to the index that joined the pair first.
local function check_synapse(c, i, spec, known, pairs_seen)
  local path = join("synapses", i)
  local t = c:table(path, spec)
  if not t then
    return nil
  end
  c:keys(path, t, _M.SYNAPSE_KEYS)
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
    path = path,
    weight = c:number(join(path, "weight"), t.weight, 1.0, 0, 1, true),
    stdp = check_stdp(c, join(path, "stdp"), t.stdp),
    filters = check_filters(c, join(path, "filters"), t.filters),
  }
  return from and to and s or nil
end

-- Checks the synapses list v against the known neuron names; returns the
-- normalized list.
function _M.check_synapses(c, v, known)
  if v == nil then
    return {}
  end
  if type(v) ~= "table" then
    c:wrong("synapses", "a list of synapses", v)
    return {}
  end
  local out, pairs_seen = {}, {}
  for _, k in ipairs(sorted_keys(v)) do
    if type(k) ~= "number" or k < 1 or k > #v or not check.is_integer(k) then
      c:fail(join("synapses", k), "synapses is a list { { from = ..., to = ... }, "
             .. "... }, got a keyed entry")
    end
  end
  for i = 1, #v do
    out[#out + 1] = check_synapse(c, i, v[i], known, pairs_seen)
  end
  return out
end

return _M
