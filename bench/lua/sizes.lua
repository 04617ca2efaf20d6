-- bench sizes: the payloads of the mixed-size flow (lua_payload_flow),
-- shared by bench/lua/producer.lua and bench/lua/sink.lua so the sink knows
-- what spike i must hold. strings(k) returns k strings whose lengths run
-- geometrically from 47 bytes (the smallest arena payload) to 8 KiB; string
-- j (1-based) is "N", then bytes of value 64 + j % 32, then "!" .
local M = {}

function M.size(j, k)
  if k == 1 then return 47 end
  return math.floor(47 * (8192 / 47) ^ ((j - 1) / (k - 1)) + 0.5)
end

function M.strings(k)
  local t = {}
  for j = 1, k do
    local n = M.size(j, k)
    t[j] = "N" .. string.rep(string.char(64 + j % 32), n - 2) .. "!"
  end
  return t
end

return M
