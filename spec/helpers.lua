-- spec/helpers.lua: shared helpers for the runtime specs.
--
--   local helpers = require("helpers")
--   helpers.fixture("runtime/echo.lua")  --> "spec/fixtures/runtime/echo.lua"
--   helpers.build()                      --> the build directory in use
--   helpers.payloads(r)                  --> { r[1].payload, r[2].payload, ... }
--   helpers.bytes(n, seed)               --> a deterministic n-byte string

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

-- Returns the output and exit status of a shell command.
function _M.sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("*a")
  p:close()
  local status = tonumber(out:match("exit=(%d+)%s*$"))
  return out:gsub("exit=%d+%s*$", ""), status
end

return _M
