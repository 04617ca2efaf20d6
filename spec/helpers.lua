-- spec/helpers.lua: helpers shared by every busted tier (spec/unit,
-- spec/runtime, spec/agents). Pure Lua: requiring it loads no runtime
-- library, so the unit tier may use it too.
--
--   local helpers = require("helpers")
--   helpers.fixture("runtime/echo.lua")  --> "spec/fixtures/runtime/echo.lua"
--   helpers.build()                      --> the build directory in use
--   helpers.payloads(r)                  --> { r[1].payload, r[2].payload, ... }
--   helpers.pluck(r, "source")           --> { r[1].source, r[2].source, ... }
--   helpers.bytes(n, seed)               --> a deterministic n-byte string
--   helpers.read(path), helpers.write(path, text)
--   helpers.now_ms(), helpers.sleep_ms(ms)
--   helpers.sh(cmd)                      --> output, exit status
--   local with, fails_at, ok = helpers.manifest_cases(dir, assert)

local _M = {}

-- Returns the path of a fixture under spec/fixtures.
function _M.fixture(rel)
  return "spec/fixtures/" .. rel
end

-- Returns the build directory the specs run against (NB_BUILD, set by
-- spec/run.sh, else build/default).
function _M.build()
  local b = os.getenv("NB_BUILD")
  if b and b ~= "" then return b end
  return "build/default"
end

-- Returns the payloads of an array of records, in order.
function _M.payloads(records)
  local out = {}
  for i, r in ipairs(records) do out[i] = r.payload end
  return out
end

-- Returns a field of every record, in order.
function _M.pluck(records, field)
  local out = {}
  for i, r in ipairs(records) do out[i] = r[field] end
  return out
end

-- Returns a deterministic string of n bytes covering every byte value.
function _M.bytes(n, seed)
  local t, x = {}, seed or 7
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = string.char(math.floor(x / 65536) % 256)
  end
  return table.concat(t)
end

-- Returns the whole content of a file (raises when it cannot be read).
function _M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Writes text to path, replacing what was there.
function _M.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Returns the C functions the clock helpers use, declared once per process
-- under names of their own so no spec's declarations can clash with them.
-- (A spec file reloads this module: the second cdef fails harmlessly.)
local C, ts
local function libc()
  if not C then
    local ffi = require("ffi")
    pcall(ffi.cdef, [[
      int nb_helpers_clock_gettime(int clk, long ts[2]) __asm__("clock_gettime");
      int nb_helpers_poll(void *fds, unsigned long nfds, int ms) __asm__("poll");
    ]])
    C, ts = ffi.C, ffi.new("long[2]")
  end
  return C
end

-- Returns the monotonic clock in milliseconds.
function _M.now_ms()
  libc().nb_helpers_clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts[0]) * 1e3 + tonumber(ts[1]) / 1e6
end

-- Sleeps for ms milliseconds.
function _M.sleep_ms(ms)
  libc().nb_helpers_poll(nil, 0, ms)
end

-- Returns the output and exit status of a shell command.
function _M.sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("*a")
  p:close()
  local status = tonumber(out:match("exit=(%d+)%s*$"))
  return out:gsub("exit=%d+%s*$", ""), status
end

-- Returns three helpers for manifest specs whose files resolve in dir
-- (assert: busted's, which the spec file sees and this module does not):
-- with(extra, neurons) (a manifest with neuron "a", a script, plus the
-- given top-level keys and neurons), fails_at(t, path, fragment) (asserts
-- one error at path containing fragment) and ok(t) (asserts t is valid;
-- returns its normalized topology).
function _M.manifest_cases(dir, assert)
  local manifest = require("neuronbus.manifest")
  local function with(extra, neurons)
    local t = { name = "t", neurons = { a = { script = "agents/echo.lua" } } }
    for k, v in pairs(neurons or {}) do t.neurons[k] = v end
    for k, v in pairs(extra or {}) do t[k] = v end
    return t
  end
  local function fails_at(t, path, fragment)
    local topo, errs = manifest.validate(t, dir)
    assert.is_nil(topo)
    assert.equal(1, #errs, "expected one error, got:\n" .. table.concat(errs or {}, "\n"))
    assert.equal(path .. ": ", errs[1]:sub(1, #path + 2), errs[1])
    if fragment then assert.matches(fragment, errs[1], 1, true) end
  end
  local function ok(t)
    local topo, errs = manifest.validate(t, dir)
    assert.is_nil(errs, errs and table.concat(errs, "\n"))
    return topo
  end
  return with, fails_at, ok
end

return _M
