-- neuronbus.units: durations and sizes as people write them in manifests.
--
--   units.duration("20ms")  --> 20000000          (nanoseconds, an integer)
--   units.duration(20)      --> nil, "expected a duration with a unit, ..."
--   units.size("64MB")      --> 67108864          (bytes, powers of 1024)
--   units.size(512)         --> 512               (a bare number is bytes)
--   units.show("a\nb")      --> "a\010b"          (quoted, for a message)
--   units.printable(s)      --> s, as one line of valid UTF-8 (\ddd escapes)
--
-- Every function returns the value, or nil and a message that names the bad
-- text and the forms that are accepted. A duration needs its unit: a bare
-- number (tau_plus = 20) could mean seconds or milliseconds, so it is
-- refused with a hint. Pure Lua, no FFI.

local type = type
local tonumber = tonumber
local tostring = tostring
local floor = math.floor
local huge = math.huge
local str_format = string.format
local str_match = string.match
local str_lower = string.lower
local str_byte = string.byte
local str_find = string.find
local str_gsub = string.gsub
local str_sub = string.sub
local tbl_concat = table.concat

local _M = { _VERSION = "0.1.0" }

local NS_PER = {
  ns = 1,
  us = 1e3,
  ms = 1e6,
  s = 1e9,
  m = 60e9,
}

local BYTES_PER = {
  [""] = 1,
  b = 1,
  k = 1024, kb = 1024, kib = 1024,
  m = 1024 ^ 2, mb = 1024 ^ 2, mib = 1024 ^ 2,
  g = 1024 ^ 3, gb = 1024 ^ 3, gib = 1024 ^ 3,
  t = 1024 ^ 4, tb = 1024 ^ 4, tib = 1024 ^ 4,
}

-- 2^53: the largest integer a Lua number holds exactly.
local MAX_EXACT = 9007199254740992

local DURATION_FORMS = 'a duration like "500us", "20ms" or "1.5s"'
  .. " (units ns, us, ms, s, m)"
local SIZE_FORMS = 'a size like "512B", "16KB" or "64MB"'
  .. " (powers of 1024, KiB/MiB/GiB too; a bare number is bytes)"

-- Returns the length of the well-formed UTF-8 sequence at byte i of s
-- (2 to 4), or nil (RFC 3629: no overlong form, no surrogate, nothing
-- past U+10FFFF).
local function utf8_seq(s, i)
  local c, c1 = str_byte(s, i, i + 1)
  if not c1 or c1 < 0x80 or c1 > 0xBF then return nil end
  local n, lo, hi = 2, 0x80, 0xBF
  if c >= 0xC2 and c <= 0xDF then return 2
  elseif c == 0xE0 then n, lo = 3, 0xA0
  elseif c == 0xED then n, hi = 3, 0x9F
  elseif c >= 0xE1 and c <= 0xEF then n = 3
  elseif c == 0xF0 then n, lo = 4, 0x90
  elseif c == 0xF4 then n, hi = 4, 0x8F
  elseif c >= 0xF1 and c <= 0xF3 then n = 4
  else return nil end
  if c1 < lo or c1 > hi then return nil end
  for k = i + 2, i + n - 1 do
    local b = str_byte(s, k)
    if not b or b < 0x80 or b > 0xBF then return nil end
  end
  return n
end

-- Returns s as one line of valid UTF-8 text for a message: control
-- characters and bytes that are not well-formed UTF-8 become \ddd escapes
-- (as in a Lua string), everything else is kept.
local function printable(s)
  if not str_find(s, "[%c\128-\255]") then
    return s
  end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = str_byte(s, i)
    if c >= 0x80 then
      local len = utf8_seq(s, i)
      if len then
        out[#out + 1] = str_sub(s, i, i + len - 1)
        i = i + len
      else
        out[#out + 1] = str_format("\\%03d", c)
        i = i + 1
      end
    else
      out[#out + 1] = (c < 0x20 or c == 0x7F) and str_format("\\%03d", c)
        or str_sub(s, i, i)
      i = i + 1
    end
  end
  return tbl_concat(out)
end
_M.printable = printable

-- Renders a value for an error message: strings quoted as a Lua string
-- literal on one line of valid UTF-8 text, others by type.
local function show(v)
  local t = type(v)
  if t == "string" then
    return '"' .. printable((str_gsub(v, '[\\"]', "\\%0"))) .. '"'
  elseif t == "number" or t == "boolean" then
    return tostring(v)
  elseif t == "nil" then
    return "nothing"
  end
  return "a " .. t
end
_M.show = show

local function is_finite(n)
  return n == n and n ~= huge and n ~= -huge
end

local function expected(forms, v, why)
  if why then
    return str_format("expected %s, got %s (%s)", forms, show(v), why)
  end
  return str_format("expected %s, got %s", forms, show(v))
end

-- Splits "  1.5 ms " into 1.5 and "ms"; returns nil when the number part
-- is not a plain decimal (no hex, no "inf", no "nan").
local function split_number(s)
  local num, unit = str_match(s, "^%s*(%-?[%d%.]+[eE]?[%+%-]?%d*)%s*(%a*)%s*$")
  if not num then
    return nil
  end
  local n = tonumber(num)
  if not n then
    return nil
  end
  return n, unit
end

-- Returns the duration v (a string with its unit) in whole nanoseconds
-- (rounded to the nearest), or nil and a message.
function _M.duration(v)
  local ns_f
  if type(v) == "number" then
    if not is_finite(v) then
      return nil, expected(DURATION_FORMS, v, "not finite")
    end
    if v < 0 then
      return nil, expected(DURATION_FORMS, v, "negative")
    end
    return nil, str_format('expected a duration with a unit, got %s (write '
      .. '"%sms" or "%ss")', show(v), show(v), show(v))
  elseif type(v) == "string" then
    local n, unit = split_number(v)
    if not n then
      return nil, expected(DURATION_FORMS, v)
    end
    if unit == "" then
      return nil, expected(DURATION_FORMS, v, "missing unit")
    end
    local mult = NS_PER[unit]
    if not mult then
      return nil, expected(DURATION_FORMS, v, 'unknown unit "' .. unit .. '"')
    end
    if n < 0 then
      return nil, expected(DURATION_FORMS, v, "negative")
    end
    ns_f = n * mult
  else
    return nil, expected(DURATION_FORMS, v)
  end
  local ns = floor(ns_f + 0.5)
  if ns > MAX_EXACT then
    return nil, expected(DURATION_FORMS, v, "too large")
  end
  return ns
end

-- Returns the duration v in milliseconds (a float), or nil and a message.
function _M.duration_ms(v)
  local ns, err = _M.duration(v)
  if not ns then
    return nil, err
  end
  return ns / 1e6
end

-- Returns the size v in bytes (an integer), or nil and a message. Units are
-- case-insensitive powers of 1024; a bare number or a unitless string is
-- bytes. A size that is not a whole number of bytes is refused.
function _M.size(v)
  local bytes
  if type(v) == "number" then
    if not is_finite(v) then
      return nil, expected(SIZE_FORMS, v, "not finite")
    end
    bytes = v
  elseif type(v) == "string" then
    local n, unit = split_number(v)
    if not n then
      return nil, expected(SIZE_FORMS, v)
    end
    local mult = BYTES_PER[str_lower(unit)]
    if not mult then
      return nil, expected(SIZE_FORMS, v, 'unknown unit "' .. unit .. '"')
    end
    bytes = n * mult
  else
    return nil, expected(SIZE_FORMS, v)
  end
  if bytes < 0 then
    return nil, expected(SIZE_FORMS, v, "negative")
  end
  if bytes ~= floor(bytes) then
    return nil, expected(SIZE_FORMS, v, "not a whole number of bytes")
  end
  if bytes > MAX_EXACT then
    return nil, expected(SIZE_FORMS, v, "too large")
  end
  return bytes
end

-- Formats ns as the shortest exact unit: 1000000 -> "1ms", 1500 -> "1.5us".
function _M.format_duration(ns)
  if ns == 0 then
    return "0s"
  end
  local units = { { "m", 60e9 }, { "s", 1e9 }, { "ms", 1e6 }, { "us", 1e3 } }
  for i = 1, #units do
    local u = units[i]
    if ns >= u[2] and ns % (u[2] / 1000) == 0 then
      return str_format("%.15g%s", ns / u[2], u[1])
    end
  end
  return str_format("%dns", ns)
end

-- Formats bytes as the largest exact unit: 67108864 -> "64MB".
function _M.format_size(bytes)
  local units = { { "GB", 1024 ^ 3 }, { "MB", 1024 ^ 2 }, { "KB", 1024 } }
  for i = 1, #units do
    local u = units[i]
    if bytes >= u[2] and bytes % u[2] == 0 then
      return str_format("%d%s", bytes / u[2], u[1])
    end
  end
  return str_format("%dB", bytes)
end

return _M
