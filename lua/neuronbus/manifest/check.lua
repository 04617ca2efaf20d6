-- neuronbus.manifest.check: the plumbing every part of the manifest schema
-- shares. A Checker collects problems (every one, not just the first), each
-- "key.path: message"; its methods check one value at a path and return it
-- normalized, or nil after reporting. Also: key paths, "did you mean"
-- hints, the limits and defaults shared with C (K, generated from the
-- headers into neuronbus.layout), file paths, and apply(), which runs a
-- list of schema entries over a table. Pure Lua, no FFI.
--
-- A schema entry describes one key of a table (a neuron, for instance):
--
--   { key = "budget",        -- the key the user writes
--     out = "budget_ns",     -- its key in the normalized table (default key)
--     check = function(c, path, v, t, n, parent) ... return value end,
--                            -- v is never nil; t the user's table at path
--                            -- parent, n the normalized one so far (entries
--                            -- run in order); nil after reporting
--     default = 0 | function(c, path, t, n) return value end }
--                            -- when the key is absent (a table value is
--                            -- copied; a function may also report)

local units = require("neuronbus.units")

local type, pairs, ipairs, tostring, select = type, pairs, ipairs, tostring, select
local getmetatable, setmetatable, pcall = getmetatable, setmetatable, pcall
local io_open, io_popen, os_getenv = io.open, io.popen, os.getenv
local floor, huge = math.floor, math.huge
local str_format, str_match, str_sub, str_byte, str_gsub =
  string.format, string.match, string.sub, string.byte, string.gsub
local tbl_concat, tbl_sort = table.concat, table.sort

local show = units.show

local _M = {}

-- Returns the generated layout: the built neuronbus.layout (a plain Lua
-- file), or one generated now from the headers of this source tree.
local function layout()
  local ok, mod = pcall(require, "neuronbus.layout")
  if ok then return mod end
  return require("neuronbus.gen_cdefs").layout_from_tree(mod)
end

-- The limits and defaults C and Lua share (CONSTANTS blocks of core/*.h
-- and runtime/nb_rt_defaults.h, without their NB_ prefix).
_M.K = layout().constants

_M.MAX_U32 = 4294967295
_M.NAME_PATTERN = "^[%w_%-%.]+$"
local TAG_PATTERN = "^[%w_%-%.:/]+$"

------------------------------------------------------------------------
-- small helpers
------------------------------------------------------------------------

-- Returns a set (value -> true) of the values of list.
function _M.set_of(list)
  local s = {}
  for i = 1, #list do
    s[list[i]] = true
  end
  return s
end

-- Appends key to a path: "neurons" .. "x" = "neurons.x", "synapses" .. 2 =
-- "synapses[2]"; keys that are neither strings nor numbers show as [type].
function _M.join(path, key)
  local t = type(key)
  if t == "number" then
    return path .. "[" .. tostring(key) .. "]"
  elseif t ~= "string" or units.printable(key) ~= key then
    return path .. "[" .. show(key) .. "]"
  elseif path == "" then
    return key
  end
  return path .. "." .. key
end
local join = _M.join

-- Returns true for a number that is neither nan nor infinite.
local function is_finite(n)
  return n == n and n ~= huge and n ~= -huge
end
_M.is_finite = is_finite

-- Returns true for a finite whole number.
function _M.is_integer(n)
  return is_finite(n) and n == floor(n)
end
local is_integer = _M.is_integer

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
function _M.sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = k
  end
  tbl_sort(keys, key_less)
  return keys
end
local sorted_keys = _M.sorted_keys

-- Returns the Levenshtein distance of strings a and b.
function _M.distance(a, b)
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
local distance = _M.distance

-- Returns the candidate closest to word (distance <= 2), or nil.
function _M.suggest(word, candidates)
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
local suggest = _M.suggest

-- Returns true when t is a sequence 1..n with nothing else.
function _M.is_array(t)
  local n = #t
  local count = 0
  for _ in pairs(t) do
    count = count + 1
  end
  return count == n
end
local is_array = _M.is_array

-- Returns a deep copy of plain data v (tables copied, the rest as is).
local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end
_M.copy = copy

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

-- Returns an absolute path with "//", "/./" and "dir/.." collapsed.
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

-- Returns path made absolute against base (itself made absolute; default:
-- the working directory).
function _M.absolute(path, base)
  if str_sub(path, 1, 1) == "/" then
    return normalize(path)
  end
  base = base or cwd()
  if str_sub(base, 1, 1) ~= "/" then
    base = cwd() .. "/" .. base
  end
  return normalize(base .. "/" .. path)
end

-- Returns the directory part of path ("." when it has none).
function _M.dirname(path)
  return str_match(path, "^(.*)/[^/]*$") or "."
end

-- Returns true, or nil and why, for a regular readable file.
function _M.readable_file(path)
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

-- Returns a checker whose relative paths resolve against basedir.
function _M.new(basedir)
  return setmetatable({ errs = {}, basedir = basedir }, Checker)
end

-- Reports a problem at path (the message a format and its arguments);
-- returns nil.
function Checker:fail(path, fmt, ...)
  local msg = select("#", ...) > 0 and str_format(fmt, ...) or fmt
  -- One line of valid UTF-8 whatever the manifest held: a value shown raw
  -- (a path, a name) may carry any byte.
  self.errs[#self.errs + 1] = units.printable(
    (path == "" and "manifest" or path) .. ": " .. msg)
  return nil
end

-- Reports a wrong type: "expected a number, got "high""; returns nil.
function Checker:wrong(path, what, v)
  return self:fail(path, "expected %s, got %s", what, show(v))
end

-- The set and the sorted text of each list of keys, made once per list.
local key_info = setmetatable({}, { __mode = "k" })

-- Reports every key of t not in the list allowed, with a hint.
function Checker:keys(path, t, allowed)
  local info = key_info[allowed]
  if not info then
    local sorted = {}
    for i = 1, #allowed do sorted[i] = allowed[i] end
    tbl_sort(sorted)
    info = { set = _M.set_of(allowed), text = tbl_concat(sorted, ", ") }
    key_info[allowed] = info
  end
  for _, k in ipairs(sorted_keys(t)) do
    if not info.set[k] then
      local hint = suggest(k, allowed)
      if hint then
        self:fail(join(path, k), 'unknown key, did you mean "%s"? (allowed: %s)',
                  hint, info.text)
      else
        self:fail(join(path, k), "unknown key (allowed: %s)", info.text)
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

-- Returns true or false, or nil after reporting anything else.
function Checker:boolean(path, v)
  if type(v) ~= "boolean" then return self:wrong(path, "true or false", v) end
  return v
end

-- Returns a name (non-empty, letters, digits, _ - .), or nil.
function Checker:name(path, v, what)
  if type(v) ~= "string" then
    return self:wrong(path, what or "a name", v)
  end
  if not str_match(v, _M.NAME_PATTERN) then
    return self:fail(path, "bad name %s: use letters, digits, _, - and . only",
                     show(v))
  end
  return v
end

-- Returns v when it is one of the words in list, else reports (with a
-- "did you mean" hint) and returns nil.
function Checker:one_of(path, v, list)
  for _, w in ipairs(list) do
    if v == w then return v end
  end
  local hint = suggest(v, list)
  return self:fail(path, "expected %s, got %s%s",
    '"' .. tbl_concat(list, '" or "') .. '"', show(v),
    hint and str_format(' (did you mean "%s"?)', hint) or "")
end

-- Returns a normalized list of tags from a string or a list of strings;
-- what names one ("region", "capability").
function Checker:tags(path, v, what)
  local was_list = type(v) == "table"
  if type(v) == "string" then
    v = { v }
  elseif type(v) ~= "table" or not is_array(v) then
    return self:wrong(path, "a " .. what .. " or a list of them", v)
  end
  if #v > _M.K.CARD_MAX_TAGS then
    return self:fail(path, "%d entries, at most %d are allowed", #v,
                     _M.K.CARD_MAX_TAGS)
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

-- Returns a duration in ns (> 0), or nil after reporting; a bare number
-- is refused (units.duration: a duration needs its unit).
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
-- schema entries
------------------------------------------------------------------------

-- Returns the user keys of a list of entries, in order.
function _M.keys_of(entries)
  local out = {}
  for i, e in ipairs(entries) do out[i] = e.key end
  return out
end

-- Runs entries over the user's table t at path into the normalized table
-- n: a key given is checked, an absent one gets its default unless an
-- earlier entry already filled n[out]. Returns n.
function _M.apply(c, path, t, n, entries)
  for _, e in ipairs(entries) do
    local out = e.out or e.key
    local v = t[e.key]
    if v ~= nil then
      n[out] = e.check(c, join(path, e.key), v, t, n, path)
    elseif n[out] == nil and e.default ~= nil then
      local d = e.default
      if type(d) == "function" then
        n[out] = d(c, join(path, e.key), t, n)
      else
        n[out] = copy(d)
      end
    end
  end
  return n
end

return _M
