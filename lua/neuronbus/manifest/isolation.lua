-- neuronbus.manifest.isolation: the fault isolation keys of a neuron.
--
--   neurons = {
--     parser = { script = "parser.lua",
--       memory = "16MB",      -- cap of the neuron's Lua heap (default 256MB;
--                             -- false: no cap)
--       budget = "20ms",      -- per entry into the agent; turns the JIT off
--       jit = false,          -- interpreter only (default true)
--       watchdog = "1s",      -- report an entry running longer (false: none)
--       watchdog_exit = "30s",-- `neuronbus run` exits (status 3) when an
--                             -- entry runs this long (default: never)
--       sandbox = true,       -- safe libraries only (default false)
--       require = { "mod" },  -- sandbox: modules the agent may require
--       exec = { "git", "/usr/bin/jq" }, -- sandbox: commands nb.exec may run
--       files = { "data/" },  -- sandbox: directories nb.files may use
--       policy = "restart",   -- on a fault: "restart" (default) or "stop"
--       on_error = "continue",-- an ordinary Lua error: "continue" (default:
--                             -- counted, next spike) or "policy" (a fault)
--       restart = { max = 5, window = "60s", backoff = "100ms",
--                   backoff_max = "10s" },
--       max_tasks = 1024,     -- tasks (nb:spawn, timer callbacks) at once
--       keep_max = 1024,      -- payloads kept past on_spike at once
--       keep_warn = "60s",    -- report a keep older than this (false: never)
--     },
--   }
--
-- A neuron with a script gets every key in its normalized form, defaults
-- filled in: memory (bytes, 0 = no cap: memory = false), budget_ns (0 = none), jit (false
-- when a budget is set), watchdog_ns (a number, or false for none),
-- watchdog_exit_ns (a number; absent = never), sandbox,
-- require (array of names, or nil), exec (array of command names and
-- absolute paths, or nil: no command), files (array of absolute
-- directories, relative ones resolved against the manifest's directory,
-- without a trailing slash; or nil: no file), policy, on_error, restart = { max,
-- window_ns, backoff_ns, backoff_max_ns }, max_tasks, keep_max,
-- keep_warn_ns (0 = never). The defaults are the runtime's
-- (runtime/nb_rt_defaults.h, through neuronbus.layout). Pure Lua, no FFI.

local units = require("neuronbus.units")
local check = require("neuronbus.manifest.check")

local type, ipairs = type, ipairs
local str_match, str_find, str_sub = string.match, string.find, string.sub
local show = units.show
local join, copy, K = check.join, check.copy, check.K

local _M = {}

-- The defaults a neuron with a script gets.
_M.DEFAULTS = {
  memory = K.MEMORY_DEFAULT,
  budget_ns = 0,
  watchdog_ns = K.WATCHDOG_DEFAULT_NS,
  sandbox = false,
  policy = "restart",
  on_error = "continue",
  restart = { max = K.RESTART_MAX, window_ns = K.RESTART_WINDOW_NS,
              backoff_ns = K.RESTART_BACKOFF_NS,
              backoff_max_ns = K.RESTART_BACKOFF_MAX_NS },
  keep_max = K.KEEP_MAX_DEFAULT,
  max_tasks = K.TASKS_MAX_DEFAULT,
  keep_warn_ns = K.KEEP_WARN_DEFAULT_NS,
}
local D = _M.DEFAULTS

-- The keys of a restart table.
_M.RESTART_KEYS = { "max", "window", "backoff", "backoff_max" }

local POLICIES = { "restart", "stop" }
local ON_ERROR = { "continue", "policy" }

-- Returns a default function giving value to a neuron with a script (a
-- remote neuron runs in its peer: there is nothing to isolate here).
local function scripted(value)
  return function(c, path, t, n)
    if n.script then return copy(value) end
  end
end

-- Checks the restart table v at path; returns it normalized with every
-- field filled in, or nil.
local function check_restart(c, path, v, t, n, parent)
  if t.policy == "stop" then
    return c:fail(path, 'only used with policy = "restart" (%s is "stop")',
      join(parent, "policy"))
  end
  if type(v) ~= "table" then
    return c:wrong(path, "a table { max =, window =, backoff =, backoff_max = }", v)
  end
  c:keys(path, v, _M.RESTART_KEYS)
  local d = D.restart
  local r = {
    max = c:integer(join(path, "max"), v.max, d.max, 0, K.RESTART_MAX_LIMIT),
    window_ns = v.window == nil and d.window_ns
      or c:duration(join(path, "window"), v.window),
    backoff_ns = v.backoff == nil and d.backoff_ns
      or c:duration(join(path, "backoff"), v.backoff),
    backoff_max_ns = v.backoff_max == nil and d.backoff_max_ns
      or c:duration(join(path, "backoff_max"), v.backoff_max),
  }
  if v.backoff ~= nil and v.backoff_max == nil and r.backoff_ns
      and r.backoff_ns > r.backoff_max_ns then
    r.backoff_max_ns = r.backoff_ns -- a long backoff needs no second key
  end
  if r.backoff_ns and r.backoff_max_ns and r.backoff_max_ns < r.backoff_ns then
    c:fail(join(path, "backoff_max"), "%s is below backoff %s",
      show(v.backoff_max), show(v.backoff or units.format_duration(d.backoff_ns)))
    return nil
  end
  if not (r.max and r.window_ns and r.backoff_ns and r.backoff_max_ns) then
    return nil
  end
  return r
end

-- Returns the normalized require list v at path, or nil after reporting.
local function check_require(c, path, v, t)
  local r = v
  if type(r) == "string" then r = { r } end
  if type(r) ~= "table" or not check.is_array(r) then
    return c:wrong(path, "a list of module names", v)
  end
  if t.sandbox ~= true then
    return c:fail(path, "only used with sandbox = true (an agent outside "
      .. "the sandbox can require any module)")
  end
  local out, ok = {}, true
  for i, m in ipairs(r) do
    if type(m) ~= "string" or not str_match(m, "^[%w_%-]+[%w_%.%-]*$") then
      ok = c:wrong(join(path, i), "a module name", m) and ok
    else
      out[#out + 1] = m
    end
  end
  return ok and out or nil
end

-- Returns list v at path (a string is a list of one) as an array of
-- strings after checking that the neuron is sandboxed, or nil after
-- reporting; what names an entry, why says what the key is for.
local function sandbox_list(c, path, v, t, what, whats, why)
  local r = v
  if type(r) == "string" then r = { r } end
  if type(r) ~= "table" or not check.is_array(r) then
    return c:wrong(path, "a list of " .. whats, v)
  end
  if t.sandbox ~= true then
    return c:fail(path, "only used with sandbox = true (" .. why .. ")")
  end
  local out, ok = {}, true
  for i, s in ipairs(r) do
    if type(s) ~= "string" or s == "" or str_find(s, "%c") then
      ok = c:wrong(join(path, i), "a " .. what, s) and ok
    else
      out[#out + 1] = s
    end
  end
  return ok and out or nil
end

-- Returns the normalized exec allowlist v at path, or nil after reporting:
-- command names (no slash: matched as given to nb.exec) and absolute
-- paths (matched exactly).
local function check_exec(c, path, v, t)
  local out = sandbox_list(c, path, v, t, "command", "commands",
    "an agent outside the sandbox may run any command")
  if not out then return nil end
  for i, s in ipairs(out) do
    if str_find(s, "/", 1, true) and str_sub(s, 1, 1) ~= "/" then
      return c:fail(join(path, i), "%s: a command name (no slash) or an "
        .. "absolute path expected", show(s))
    end
  end
  return out
end

-- Returns the normalized files directories v at path (absolute, against
-- the manifest's directory, no trailing slash), or nil after reporting.
local function check_files(c, path, v, t)
  local out = sandbox_list(c, path, v, t, "directory", "directories",
    "an agent outside the sandbox may use any file")
  if not out then return nil end
  for i, s in ipairs(out) do
    local abs = check.absolute(s, c.basedir)
    if #abs > 1 then abs = (str_match(abs, "^(.-)/*$")) end
    out[i] = abs ~= "" and abs or "/"
  end
  return out
end

-- The schema entries of the isolation keys (see neuronbus.manifest.check).
_M.ENTRIES = {
  { key = "memory", default = scripted(D.memory),
    check = function(c, path, v)
      if v == false then return 0 end -- no cap
      if v == true then
        return c:fail(path, 'expected a size like "64MB", or false for no '
          .. "cap (the default is %s), got true",
          units.format_size(K.MEMORY_DEFAULT))
      end
      local bytes, err = units.size(v)
      if not bytes then return c:fail(path, err) end
      if bytes < K.MEMORY_MIN then
        return c:fail(path, "%s is below the minimum of %s (the runtime's "
          .. "own Lua side needs about 150KB of the state)", show(v),
          units.format_size(K.MEMORY_MIN))
      end
      return bytes
    end },
  { key = "jit",
    check = function(c, path, v) return c:boolean(path, v) end,
    -- compiled loops never see the budget's hook: a budget turns it off
    default = function(c, path, t, n)
      if n.script then return t.budget == nil end
    end },
  { key = "budget", out = "budget_ns", default = scripted(D.budget_ns),
    check = function(c, path, v, t, n, parent)
      local ns = c:duration(path, v)
      if t.jit == true then
        return c:fail(path, "a budget needs jit = false, but %s is true: "
          .. "compiled loops never check the budget's hook (leave jit out: "
          .. "a budget turns the JIT off for this neuron)", join(parent, "jit"))
      end
      return ns
    end },
  { key = "watchdog", out = "watchdog_ns", default = scripted(D.watchdog_ns),
    check = function(c, path, v)
      if v == false then return false end
      return c:duration(path, v)
    end },
  { key = "watchdog_exit", out = "watchdog_exit_ns",
    check = function(c, path, v, t, n, parent)
      if v == false then return nil end -- never, as when absent
      local ns = c:duration(path, v)
      if not ns then return nil end
      if t.watchdog == false then
        return c:fail(path, "exiting when an entry is stuck needs the watchdog, "
          .. "but %s is false", join(parent, "watchdog"))
      end
      local wd = t.watchdog == nil and D.watchdog_ns or units.duration(t.watchdog)
      if wd and ns < wd then
        return c:fail(path, "%s is below the watchdog (%s): the watchdog reports "
          .. "a long entry first, watchdog_exit ends the process later",
          show(v), units.format_duration(wd))
      end
      return ns
    end },
  { key = "sandbox", default = scripted(D.sandbox),
    check = function(c, path, v) return c:boolean(path, v) end },
  { key = "require", check = check_require },
  { key = "exec", check = check_exec },
  { key = "files", check = check_files },
  { key = "policy", default = scripted(D.policy),
    check = function(c, path, v) return c:one_of(path, v, POLICIES) end },
  { key = "on_error", default = scripted(D.on_error),
    check = function(c, path, v) return c:one_of(path, v, ON_ERROR) end },
  { key = "restart", check = check_restart, default = scripted(D.restart) },
  { key = "max_tasks", default = scripted(D.max_tasks),
    check = function(c, path, v) return c:integer(path, v, nil, 0, K.TASKS_MAX_LIMIT) end },
  { key = "keep_max", default = scripted(D.keep_max),
    check = function(c, path, v) return c:integer(path, v, nil, 0, K.KEEP_MAX_LIMIT) end },
  { key = "keep_warn", out = "keep_warn_ns", default = scripted(D.keep_warn_ns),
    check = function(c, path, v)
      if v == false then return 0 end
      return c:duration(path, v)
    end },
}

return _M
