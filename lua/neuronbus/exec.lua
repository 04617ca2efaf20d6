-- neuronbus.exec: nb.exec, processes an agent's task waits for without
-- blocking the loop (runtime/nb_rt_exec.c runs them with libuv).
--
--   local r, err = nb.exec{ cmd = "git", args = { "log", "-1" },
--     stdin = "text", env = { LANG = "C", HOME = false }, cwd = "repo",
--     timeout = "10s" }
--   --> r = { status = 0, stdout = "...", stderr = "...", signal = nil,
--   --        ok = true }     (ok: status == 0)
--   --> nil, message[, r]    (r: what it wrote before it was killed)
--
-- Only inside a task (nb:spawn). cmd: a name looked up on the runtime's
-- PATH, or a path; no shell. args: strings (numbers are converted). env:
-- added to the runtime's environment (a value false removes a variable).
-- cwd: the working directory (default: the runtime's). stdin: bytes
-- (default: none, /dev/null). timeout: a duration or seconds (default
-- 60s; false: none): SIGTERM, then SIGKILL a second later.
--
-- A process that ran gives r, whatever its exit status (status is 128 +
-- the signal when one ended it, and signal says which). nil and a message
-- for: a command not found, one the sandbox does not allow, a timeout, a
-- stream past 16 MiB (the process is killed: r.truncated names the
-- stream); the last two add r with r.timed_out or r.truncated. Bad
-- arguments raise.

local ffi = require("ffi")
local nbffi = require("neuronbus.ffi")
local tasks = require("neuronbus.tasks")

local C = ffi.C
local type, tostring, pairs, ipairs = type, tostring, pairs, ipairs
local error, tonumber = error, tonumber
local str_match, str_find = string.match, string.find
local sort = table.sort

local K = nbffi.constants
local E = K.err
local KEYS = { cmd = true, args = true, stdin = true, env = true, cwd = true,
               timeout = true }

local _M = {}

-- Raises "nb.exec: msg" at the agent's call.
local function bad(msg)
  error("nb.exec: " .. msg, 3)
end

-- Returns a const char *[] of the strings in list plus NULL, and the
-- strings kept alive with it.
local function cstrings(list)
  local n = #list
  local arr = ffi.new("const char *[?]", n + 1)
  for i = 1, n do arr[i - 1] = list[i] end
  arr[n] = nil
  return arr
end

-- Returns the env entries ("NAME=VALUE", or "NAME" to remove) of t, in
-- name order.
local function env_entries(t)
  local names = {}
  for k in pairs(t) do
    if type(k) ~= "string" or not str_match(k, "^[%a_][%w_]*$") then
      bad("env: " .. tostring(k) .. " is not a variable name")
    end
    names[#names + 1] = k
  end
  sort(names)
  local out = {}
  for i, k in ipairs(names) do
    local v = t[k]
    if v == false then
      out[i] = k
    elseif type(v) == "string" or type(v) == "number" then
      v = tostring(v)
      if str_find(v, "\0", 1, true) then bad("env." .. k .. ": a NUL byte") end
      out[i] = k .. "=" .. v
    else
      bad("env." .. k .. ": expected a string, a number or false, got a " .. type(v))
    end
  end
  return out
end

-- Runs a process (see the top of this file). Called as nb.exec{...} (or
-- nb:exec{...}).
function _M.exec(a, b)
  local spec = b
  if spec == nil then spec = a end
  local t = tasks.current("nb.exec", 2)
  if type(spec) ~= "table" then
    bad("expected a table { cmd =, args =, ... }, got a " .. type(spec))
  end
  for k in pairs(spec) do
    if not KEYS[k] then
      bad("unknown key " .. tostring(k) .. " (cmd, args, stdin, env, cwd, timeout)")
    end
  end
  local cmd = spec.cmd
  if type(cmd) ~= "string" or cmd == "" or str_find(cmd, "\0", 1, true) then
    bad("cmd: expected a command name or path, got " .. (type(cmd) == "string"
      and ("%q"):format(cmd) or "a " .. type(cmd)))
  end
  local args = {}
  if spec.args ~= nil then
    if type(spec.args) ~= "table" then bad("args: expected a list of strings, got a " .. type(spec.args)) end
    for i, v in ipairs(spec.args) do
      if type(v) ~= "string" and type(v) ~= "number" then
        bad("args[" .. i .. "]: expected a string, got a " .. type(v))
      end
      v = tostring(v)
      if str_find(v, "\0", 1, true) then bad("args[" .. i .. "]: a NUL byte") end
      args[i] = v
    end
  end
  local env
  if spec.env ~= nil then
    if type(spec.env) ~= "table" then bad("env: expected a table, got a " .. type(spec.env)) end
    env = env_entries(spec.env)
  end
  local cwd = spec.cwd
  if cwd ~= nil and (type(cwd) ~= "string" or cwd == "") then
    bad("cwd: expected a directory, got a " .. type(cwd))
  end
  local stdin = spec.stdin
  if stdin ~= nil and type(stdin) ~= "string" then
    bad("stdin: expected a string, got a " .. type(stdin))
  end
  local timeout = spec.timeout
  local ns = K.EXEC_TIMEOUT_DEFAULT_NS
  if timeout == false then
    ns = 0
  elseif timeout ~= nil then
    local err
    ns, err = tasks.duration_ns(timeout, "nb.exec: timeout")
    if not ns then error(err, 2) end
    if ns == 0 then bad("timeout: 0 would kill it at once (false: no timeout)") end
  end
  local cargs, cenv = cstrings(args), env and cstrings(env) or nil
  local id = C.nb_rt_exec(tasks.cell(), cmd, cargs, cenv, cwd, stdin,
    stdin and #stdin or 0, stdin and 1 or 0, ns)
  local ev = tasks.wait(t, id, "nb.exec")
  local code = ev.code
  if ev.status < 0 then return nil, ev.msg end -- it never ran
  local signal = ev.msg and code == 0 and tonumber(str_match(ev.msg, "^signal (%d+)$"))
  if code ~= 0 and ev.status > 128 then signal = ev.status - 128 end -- killed by us
  local r = { status = ev.status, stdout = ev.data or "", stderr = ev.data2 or "",
              signal = signal or nil }
  r.ok = r.status == 0 and code == 0
  if code == E.ETIMEDOUT then
    r.timed_out = true
    return nil, ev.msg, r
  elseif code == E.ETOOBIG then
    r.truncated = str_match(ev.msg or "", ": (std%a+) passed") or "stdout"
    return nil, ev.msg, r
  elseif code ~= 0 then
    return nil, ev.msg or ffi.string(C.nb_strerror(code))
  end
  return r
end

-- The names of the keys nb.exec takes, for the docs and tests.
_M.KEYS = { "cmd", "args", "stdin", "env", "cwd", "timeout" }

return _M
