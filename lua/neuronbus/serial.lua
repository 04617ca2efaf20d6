-- neuronbus.serial: plain Lua data as Lua source, to cross between states.
--
--   local src = serial.dump({ a = 1, b = { "x" } })  --> "return {...}"
--   local v = assert(loadstring(src))()
--
-- nil, booleans, numbers (also nan and +-inf), strings (any bytes) and
-- tables of those (keys strings, numbers or booleans). Anything else, and a
-- table nested more than 100 deep (a cycle), raises an error naming the
-- path of the value. Keys are written sorted, so equal data dumps equally.

local type, pairs, tostring = type, pairs, tostring
local str_format = string.format
local tbl_concat, tbl_sort = table.concat, table.sort
local floor, huge = math.floor, math.huge

local _M = {}

-- Returns a number as Lua source that reads back as the same number.
local function num(n)
  if n ~= n then return "(0/0)" end
  if n == huge then return "math.huge" end
  if n == -huge then return "-math.huge" end
  if n == floor(n) and n >= -2^53 and n <= 2^53 then
    return str_format("%d", n)
  end
  return str_format("%.17g", n)
end

-- Orders keys: numbers first (by value), then strings, then booleans.
local RANK = { number = 1, string = 2, boolean = 3 }
local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return RANK[ta] < RANK[tb] end
  if ta == "boolean" then return (not a) and b end
  return a < b
end

local function dump(v, path, depth, out)
  local t = type(v)
  if t == "nil" then out[#out + 1] = "nil"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then out[#out + 1] = num(v)
  elseif t == "string" then out[#out + 1] = str_format("%q", v)
  elseif t == "table" then
    if depth > 100 then
      error(path .. ": nested more than 100 deep (a cycle?)", 0)
    end
    local keys = {}
    for k in pairs(v) do
      local kt = type(k)
      if kt ~= "string" and kt ~= "number" and kt ~= "boolean" then
        error(path .. ": a " .. kt .. " key cannot be copied (plain data only)", 0)
      end
      keys[#keys + 1] = k
    end
    tbl_sort(keys, key_less)
    out[#out + 1] = "{"
    for i = 1, #keys do
      local k = keys[i]
      local sub
      if type(k) == "string" then
        out[#out + 1] = str_format("[%q]=", k)
        sub = path .. "." .. k
      else
        out[#out + 1] = "[" .. (type(k) == "number" and num(k) or tostring(k)) .. "]="
        sub = path .. "[" .. tostring(k) .. "]"
      end
      dump(v[k], sub, depth + 1, out)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  else
    error(path .. ": a " .. t .. " cannot be copied (plain data only)", 0)
  end
end

-- Returns "return <v>" as Lua source; raises an error naming the path
-- (starting with name, default "value") of a value that is not plain data.
function _M.dump(v, name)
  local out = { "return " }
  dump(v, name or "value", 0, out)
  return tbl_concat(out)
end

return _M
