-- neuronbus.gen_cdefs: turns the C headers into lua/neuronbus/layout.lua.
--
-- The spike layout has exactly one source of truth, core/nb_spike.h (the
-- block between "BEGIN LAYOUT" and "END LAYOUT"); the runtime's FFI surface
-- is the block between "BEGIN FFI" and "END FFI" in runtime/nb_rt_ffi.h. This
-- module copies both blocks, strips comments, and rewrites C11 alignas into
-- the GCC attribute LuaJIT's C parser understands. It also copies the
-- numbers C and Lua share: the error codes of NB_ERR_MAP (core/nb_err.h)
-- and every numeric #define between "BEGIN CONSTANTS" and "END CONSTANTS"
-- lines (limits in core/*.h, the runtime's defaults in
-- runtime/nb_rt_defaults.h). The Makefile runs it as
--
--   luajit lua/neuronbus/gen_cdefs.lua core/nb_spike.h runtime/nb_rt_ffi.h OUT \
--     core/*.h runtime/nb_rt_defaults.h
--
-- to write lua/neuronbus/layout.lua, a plain Lua file:
--
--   layout.cdef                      -- the one ffi.cdef string
--   layout.constants.PAYLOAD_MAX     -- nb_spike.h's #defines, NB_ dropped
--   layout.constants.CARD_MAX_TAGS   -- a CONSTANTS block's, NB_ dropped
--   layout.constants.err.ENOENT      -- NB_ENOENT of NB_ERR_MAP: -14
--
-- neuronbus.ffi and neuronbus.manifest call layout_from_tree() when that
-- file was never built (a fresh clone run by busted).

local _M = {}

-- Returns the text of path, or raises an error naming the file.
local function slurp(path)
  local f, err = io.open(path, "rb")
  if not f then error("gen_cdefs: cannot read " .. tostring(err), 0) end
  local s = f:read("*a")
  f:close()
  return s
end

-- Returns the lines between the BEGIN and END markers of one block, or
-- raises an error naming the file and the missing marker.
local function block(text, path, first, last)
  -- The markers open a comment at the start of a line: prose that merely
  -- mentions them (like this header's) is not a marker.
  local b = text:find("\n/%* " .. first)
  local e = text:find("\n/%* " .. last)
  if not b or not e or e < b then
    error("gen_cdefs: " .. path .. " has no '" .. first .. "' ... '"
      .. last .. "' block", 0)
  end
  -- Skip the rest of the BEGIN line (it sits inside a comment) and stop at
  -- the start of the END line.
  local from = text:find("\n", b + 1, true) + 1
  return text:sub(from, e)
end

-- Returns C declarations with comments removed and alignas(N) written as
-- a trailing __attribute__((aligned(N))) on its field.
local function clean(decls)
  decls = decls:gsub("/%*.-%*/", ""):gsub("//[^\n]*", "")
  decls = decls:gsub("alignas%((%d+)%)%s+([^;]-)%s*;", function(n, field)
    return field .. " __attribute__((aligned(" .. n .. ")));"
  end)
  local out = {}
  for line in decls:gmatch("[^\n]+") do
    line = line:gsub("%s+$", "")
    if line:find("%S") then out[#out + 1] = line end
  end
  return table.concat(out, "\n")
end

-- Struct fields renamed on the Lua side: a field shadows a metatype
-- method of the same name, and spike:payload() must be the method (the
-- raw bytes stay reachable as spike.payload_bytes, at the same offset; the
-- layout spec checks it against offsetof(nb_spike_t, payload)).
_M.RENAMED = { nb_spike_s = { payload = "payload_bytes" } }

-- Returns decls with the renamed fields of each struct applied.
local function rename(decls)
  return (decls:gsub("(typedef%s+struct%s+([%w_]+)%s*%b{})", function(body, tag)
    local map = _M.RENAMED[tag]
    if not map then return body end
    for from, to in pairs(map) do
      body = body:gsub("([%s%*])" .. from .. "(%s*[%[;])", "%1" .. to .. "%2")
    end
    return body
  end))
end

-- Returns the full cdef string from the spike header and runtime header.
function _M.generate(spike_h, rt_h)
  local spike = slurp(spike_h)
  local rt = slurp(rt_h)
  -- nb_id_t and the constants precede the block in nb_spike.h; the FFI
  -- side needs the typedef, and the constants are exported as a table.
  return "typedef uint16_t nb_id_t;\n"
    .. rename(clean(block(spike, spike_h, "BEGIN LAYOUT", "END LAYOUT"))) .. "\n"
    .. clean(block(rt, rt_h, "BEGIN FFI", "END FFI")) .. "\n"
end

-- The headers of a source tree, relative to its root: the FFI surface, and
-- the headers a tree's CONSTANTS blocks and error map may sit in (a
-- pattern ending in "*.h" stands for every header of that folder).
_M.SPIKE_HEADER = "core/nb_spike.h"
_M.FFI_HEADER = "runtime/nb_rt_ffi.h"
_M.CONSTANT_HEADERS = { "core/*.h", "runtime/nb_rt_defaults.h" }

-- Returns the numeric #defines of nb_spike.h that Lua needs, as a table.
function _M.constants(spike_h)
  local text = slurp(spike_h)
  local k = {}
  for name, value in text:gmatch("#define%s+NB_([%u_]+)%s+(0?x?%x+)u?") do
    k[name] = tonumber(value)
  end
  return k
end

-- Returns the number a C integer literal spells ("0xFFFFu", "4096",
-- "60000000000ull"), or nil.
local function literal(s)
  local digits = s:match("^(0[xX]%x+)[uUlL]*$") or s:match("^(%d+)[uUlL]*$")
    -- A decimal fraction (a default such as 0.01 or 1e-3), double or float.
    or s:match("^(%d+%.%d*[eE][%-+]?%d+)[fF]?$") or s:match("^(%d+%.%d*)[fF]?$")
    or s:match("^(%d+[eE][%-+]?%d+)[fF]?$")
  return digits and tonumber(digits)
end

-- Returns the value of a #define's body: a literal, a name defined before
-- (known, by C name), a parenthesized one or a left shift of two; nil when
-- it is anything else.
local function value_of(expr, known)
  expr = expr:match("^%s*(.-)%s*$")
  local inner = expr:match("^%((.*)%)$")
  if inner then return value_of(inner, known) end
  local n = literal(expr)
  if n then return n end
  if known[expr] then return known[expr] end
  local a, b = expr:match("^(.-)<<(.*)$")
  if a then
    local x, y = value_of(a, known), value_of(b, known)
    if x and y then return x * 2 ^ y end
  end
  return nil
end

-- Adds to known (C name -> number) every #define between the BEGIN
-- CONSTANTS and END CONSTANTS lines of text (any number of blocks); raises
-- naming the file for a block left open, a define whose value is not a
-- number (see value_of) or a name given two different values.
local function block_constants(text, path, known)
  text = "\n" .. text -- a marker on the first line starts a line too
  local at = 1
  while true do
    local b = text:find("\n/%* BEGIN CONSTANTS", at)
    if not b then return end
    local e = text:find("\n/%* END CONSTANTS", b + 1)
    if not e then
      error("gen_cdefs: " .. path .. " has a 'BEGIN CONSTANTS' without its "
        .. "'END CONSTANTS'", 0)
    end
    local body = text:sub(text:find("\n", b + 1, true) + 1, e)
    body = body:gsub("/%*.-%*/", ""):gsub("//[^\n]*", "")
    for name, expr in body:gmatch("#define%s+([%w_]+)[ \t]+([^\n]+)") do
      local v = value_of(expr, known)
      if not v then
        error("gen_cdefs: " .. path .. ": " .. name .. " is not a number "
          .. "this generator reads (" .. expr:match("^%s*(.-)%s*$") .. ")", 0)
      end
      if known[name] and known[name] ~= v then
        error("gen_cdefs: " .. path .. ": " .. name .. " is defined twice", 0)
      end
      known[name] = v
    end
    at = e + 1
  end
end

-- Adds to errs (name -> code, "ENOENT" -> -14) the entries of the
-- NB_ERR_MAP in text, when text defines it.
local function error_map(text, errs)
  local from = text:find("#define%s+NB_ERR_MAP%(")
  if not from then return end
  -- The map is one macro: it ends at the first line without a backslash.
  local stop = text:find("[^\\]\n", from) or #text
  local map = text:sub(from, stop)
  for name, code in map:gmatch("XX%(%s*([%w_]+)%s*,%s*(%-?%d+)%s*,") do
    errs["E" .. name] = tonumber(code)
  end
end

-- Returns the constants of headers (a list of paths): C name -> number
-- for the CONSTANTS blocks, and the error map's name -> code.
function _M.shared_constants(headers)
  local known, errs = {}, {}
  for _, path in ipairs(headers) do
    local text = slurp(path)
    block_constants(text, path, known)
    error_map(text, errs)
  end
  return known, errs
end

-- Returns the sorted keys of t.
local function sorted(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- Returns the source of layout.lua: the cdef string and the constants of
-- spike_h, then those of headers (CONSTANTS blocks without their NB_
-- prefix, and the error map under err).
function _M.module(spike_h, rt_h, headers)
  headers = headers or {}
  local consts = _M.constants(spike_h)
  local shared, errs = _M.shared_constants(headers)
  for cname, v in pairs(shared) do
    local name = cname:gsub("^NB_", "")
    if consts[name] and consts[name] ~= v then
      error("gen_cdefs: " .. cname .. " differs from the " .. spike_h
        .. " constant of the same name", 0)
    end
    consts[name] = v
  end
  local lines = {
    "-- GENERATED from " .. spike_h .. " and " .. rt_h
      .. " by lua/neuronbus/gen_cdefs.lua: do not edit.",
  }
  if #headers > 0 then
    lines[#lines + 1] = "-- Constants from:"
    for _, h in ipairs(headers) do lines[#lines + 1] = "--   " .. h end
  end
  for _, l in ipairs({
    "return {",
    "  cdef = [==[",
    _M.generate(spike_h, rt_h) .. "]==],",
    "  constants = {",
  }) do lines[#lines + 1] = l end
  for _, name in ipairs(sorted(consts)) do
    local v = consts[name]
    -- %.17g keeps a fraction exact and writes an integer as one.
    lines[#lines + 1] = string.format(v % 1 == 0 and "    %s = %d," or "    %s = %.17g,",
      name, v)
  end
  lines[#lines + 1] = "    err = {"
  for _, name in ipairs(sorted(errs)) do
    lines[#lines + 1] = string.format("      %s = %d,", name, errs[name])
  end
  lines[#lines + 1] = "    },"
  lines[#lines + 1] = "  },"
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n") .. "\n"
end

-- Returns the paths the patterns of CONSTANT_HEADERS stand for in the tree
-- at root (nil: the working directory, paths stay relative), in the order
-- the Makefile's $(sort $(wildcard ...)) gives them.
function _M.constant_headers(root)
  local pre = root and root .. "/" or ""
  local out = {}
  for _, pat in ipairs(_M.CONSTANT_HEADERS) do
    local dir = pat:match("^(.*)/%*%.h$")
    if dir then
      local p = io.popen("ls '" .. pre .. dir .. "' 2>/dev/null")
      local names = {}
      for name in p:lines() do
        if name:match("%.h$") then names[#names + 1] = name end
      end
      p:close()
      table.sort(names) -- byte order, like make's sort
      for _, name in ipairs(names) do out[#out + 1] = pre .. dir .. "/" .. name end
    else
      out[#out + 1] = pre .. pat
    end
  end
  return out
end

-- Returns the layout module generated now from the headers of the source
-- tree this file sits in (lua/neuronbus/gen_cdefs.lua -> ../..), for a
-- tree where make never wrote lua/neuronbus/layout.lua; raises saying so,
-- with why (the failed require's message), when the headers are not there.
function _M.layout_from_tree(why)
  local here = package.searchpath("neuronbus.gen_cdefs", package.path)
  if here and here:sub(1, 1) ~= "/" then
    local pwd = os.getenv("PWD")
    if pwd then here = pwd .. "/" .. here end
  end
  local root = here and here:match("^(.*)/lua/neuronbus/gen_cdefs%.lua$")
  local f = root and io.open(root .. "/" .. _M.SPIKE_HEADER, "rb")
  if not f then
    error("neuronbus/layout.lua is not built and the C headers cannot be "
      .. "found (run make): " .. tostring(why), 2)
  end
  f:close()
  local src = _M.module(root .. "/" .. _M.SPIKE_HEADER,
    root .. "/" .. _M.FFI_HEADER, _M.constant_headers(root))
  return assert(loadstring(src, "=neuronbus.layout"))()
end

-- Command line: writes the module to OUT through a temporary file so
-- parallel builds never see half a file. Arguments: SPIKE_H FFI_H OUT
-- [HEADER...], the headers whose constants layout.lua carries.
if arg and arg[0] and arg[0]:find("gen_cdefs%.lua$") and arg[3] then
  local out = arg[3]
  local headers = {}
  for i = 4, #arg do headers[#headers + 1] = arg[i] end
  local src = _M.module(arg[1], arg[2], headers)
  local tmp = out .. ".tmp" .. tostring(os.time()) .. tostring(math.random(1e9))
  local f = assert(io.open(tmp, "wb"))
  f:write(src)
  f:close()
  assert(os.rename(tmp, out))
end

return _M
