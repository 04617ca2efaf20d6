-- neuronbus.isolation: the fault isolation keys of a neuron in a manifest
-- (issue 4), checked for neuronbus.manifest.
--
--   neurons = {
--     parser = { script = "parser.lua",
--       memory = "16MB",      -- cap of the neuron's Lua heap (none by default)
--       budget = "20ms",      -- per entry into the agent; turns the JIT off
--       jit = false,          -- interpreter only (default true)
--       watchdog = "1s",      -- report an entry running longer (false: none)
--       sandbox = true,       -- safe libraries only (default false)
--       require = { "mod" },  -- sandbox: modules the agent may require
--       policy = "restart",   -- on a fault: "restart" (default) or "stop"
--       on_error = "continue",-- an ordinary Lua error: "continue" (default:
--                             -- counted, next spike) or "policy" (a fault)
--       restart = { max = 5, window = "60s", backoff = "100ms",
--                   backoff_max = "10s" },
--     },
--   }
--
-- The normalized neuron gets only the keys given: memory (bytes), budget_ns,
-- jit (boolean), watchdog_ns (a number, or false for none), sandbox
-- (boolean), require (array of names), policy, on_error, restart = { max,
-- window_ns, backoff_ns, backoff_max_ns } (every field filled in). The
-- runtime (runtime/nb_rt_isolation.c) supplies the defaults below for the
-- rest. Pure Lua, no FFI.

local units = require("neuronbus.units")

local type, ipairs, tostring = type, ipairs, tostring
local str_format, str_match = string.format, string.match
local show = units.show

local _M = { _VERSION = "0.1.0" }

-- The keys a neuron gains, and the keys of its restart table.
_M.NEURON_KEYS = { "memory", "budget", "jit", "watchdog", "sandbox",
                   "require", "policy", "on_error", "restart" }
_M.KEYS = { restart = { "max", "window", "backoff", "backoff_max" } }

-- Defaults the runtime applies (mirrored in runtime/nb_rt_isolation.c).
_M.DEFAULTS = {
  policy = "restart",
  on_error = "continue",
  watchdog_ns = 1e9,
  restart = { max = 5, window_ns = 60e9, backoff_ns = 100e6,
              backoff_max_ns = 10e9 },
}

-- The smallest cap: a state with the runtime's Lua side loaded holds about
-- 150 KB before the agent allocates anything.
_M.MIN_MEMORY = 256 * 1024
local MAX_RESTARTS = 1000000

local POLICIES = { "restart", "stop" }
local ON_ERROR = { "continue", "policy" }

-- Returns v when it is one of the words in list, else reports (with a
-- "did you mean" hint) and returns nil.
local function one_of(c, path, v, list, h)
  for _, w in ipairs(list) do
    if v == w then return v end
  end
  local hint = type(v) == "string" and h.suggest(v, list)
  return c:fail(path, "expected %s, got %s%s",
    '"' .. table.concat(list, '" or "') .. '"', show(v),
    hint and str_format(' (did you mean "%s"?)', hint) or "")
end

-- Returns a boolean, or nil after reporting anything else.
local function boolean(c, path, v)
  if type(v) ~= "boolean" then return c:wrong(path, "true or false", v) end
  return v
end

-- Returns a duration in ns above zero, or nil after reporting.
local function duration(c, path, v)
  local ns, err = units.duration(v)
  if not ns then return c:fail(path, err) end
  if ns <= 0 then
    return c:fail(path, "expected a duration above zero, got %s", show(v))
  end
  return ns
end

-- Checks the restart table at path; returns it normalized with every field
-- filled in, or nil.
local function check_restart(c, path, v, h)
  if type(v) ~= "table" then
    return c:wrong(path, "a table { max =, window =, backoff =, backoff_max = }", v)
  end
  c:keys(path, v, "restart")
  local d = _M.DEFAULTS.restart
  local r = {
    max = c:integer(h.join(path, "max"), v.max, d.max, 0, MAX_RESTARTS),
    window_ns = v.window == nil and d.window_ns
      or duration(c, h.join(path, "window"), v.window),
    backoff_ns = v.backoff == nil and d.backoff_ns
      or duration(c, h.join(path, "backoff"), v.backoff),
    backoff_max_ns = v.backoff_max == nil and d.backoff_max_ns
      or duration(c, h.join(path, "backoff_max"), v.backoff_max),
  }
  if v.backoff ~= nil and v.backoff_max == nil and r.backoff_ns
      and r.backoff_ns > r.backoff_max_ns then
    r.backoff_max_ns = r.backoff_ns -- a long backoff needs no second key
  end
  if r.backoff_ns and r.backoff_max_ns and r.backoff_max_ns < r.backoff_ns then
    c:fail(h.join(path, "backoff_max"), "%s is below backoff %s",
      show(v.backoff_max), show(v.backoff or units.format_duration(d.backoff_ns)))
    return nil
  end
  if not (r.max and r.window_ns and r.backoff_ns and r.backoff_max_ns) then
    return nil
  end
  return r
end

-- Checks the isolation keys of neuron table t (at path, "neurons.name")
-- and copies them normalized into n. h holds manifest's helpers: join,
-- suggest. Problems are reported through the checker c.
function _M.check(c, path, t, n, h)
  local p = function(k) return h.join(path, k) end
  if t.memory ~= nil then
    local bytes, err = units.size(t.memory)
    if not bytes then
      c:fail(p("memory"), err)
    elseif bytes < _M.MIN_MEMORY then
      c:fail(p("memory"), "%s is below the minimum of 256KB (the runtime's "
        .. "own Lua side needs about 150KB of the state)", show(t.memory))
    else
      n.memory = bytes
    end
  end
  if t.jit ~= nil then n.jit = boolean(c, p("jit"), t.jit) end
  if t.budget ~= nil then
    n.budget_ns = duration(c, p("budget"), t.budget)
    if t.jit == true then
      c:fail(p("budget"), "a budget needs jit = false, but %s is true: "
        .. "compiled loops never check the budget's hook (leave jit out: "
        .. "a budget turns the JIT off for this neuron)", p("jit"))
    end
  end
  if t.watchdog ~= nil then
    if t.watchdog == false then
      n.watchdog_ns = false
    else
      n.watchdog_ns = duration(c, p("watchdog"), t.watchdog)
    end
  end
  if t.sandbox ~= nil then n.sandbox = boolean(c, p("sandbox"), t.sandbox) end
  if t.require ~= nil then
    local r = t.require
    if type(r) == "string" then r = { r } end
    if type(r) ~= "table" or not h.is_array(r) then
      c:wrong(p("require"), "a list of module names", t.require)
    elseif t.sandbox ~= true then
      c:fail(p("require"), "only used with sandbox = true (an agent "
        .. "outside the sandbox can require any module)")
    else
      local out, ok = {}, true
      for i, m in ipairs(r) do
        if type(m) ~= "string" or not str_match(m, "^[%w_%-]+[%w_%.%-]*$") then
          ok = c:wrong(h.join(p("require"), i), "a module name", m) and ok
        else
          out[#out + 1] = m
        end
      end
      if ok then n.require = out end
    end
  end
  if t.policy ~= nil then n.policy = one_of(c, p("policy"), t.policy, POLICIES, h) end
  if t.on_error ~= nil then
    n.on_error = one_of(c, p("on_error"), t.on_error, ON_ERROR, h)
  end
  if t.restart ~= nil then
    if t.policy == "stop" then
      c:fail(p("restart"), 'only used with policy = "restart" (%s is "stop")',
        p("policy"))
    else
      n.restart = check_restart(c, p("restart"), t.restart, h)
    end
  end
end

-- Returns a short text of the normalized isolation fields of n (for
-- messages and specs): "memory 16MB, budget 20ms, jit off, sandbox".
function _M.describe(n)
  local parts = {}
  if n.memory then parts[#parts + 1] = "memory " .. units.format_size(n.memory) end
  if n.budget_ns then
    parts[#parts + 1] = "budget " .. units.format_duration(n.budget_ns)
  end
  if n.jit == false or n.budget_ns then parts[#parts + 1] = "jit off" end
  if n.sandbox then parts[#parts + 1] = "sandbox" end
  parts[#parts + 1] = "policy " .. tostring(n.policy or _M.DEFAULTS.policy)
  return table.concat(parts, ", ")
end

return _M
