-- neuronbus.gen_cdefs: turns the C headers into the one ffi.cdef string.
--
-- The spike layout has exactly one source of truth, core/nb_spike.h (the
-- block between "BEGIN LAYOUT" and "END LAYOUT"); the runtime's FFI surface
-- is the block between "BEGIN FFI" and "END FFI" in runtime/nb_rt_ffi.h. This
-- module copies both blocks, strips comments, and rewrites C11 alignas into
-- the GCC attribute LuaJIT's C parser understands. The Makefile runs it as
--
--   luajit lua/neuronbus/gen_cdefs.lua core/nb_spike.h runtime/nb_rt_ffi.h OUT
--
-- to write lua/neuronbus/layout.lua; neuronbus.ffi also calls generate()
-- directly when that file was never built (a fresh clone run by busted).

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

-- Returns the numeric #defines of nb_spike.h that Lua needs, as a table.
function _M.constants(spike_h)
  local text = slurp(spike_h)
  local k = {}
  for name, value in text:gmatch("#define%s+NB_([%u_]+)%s+(0?x?%x+)u?") do
    k[name] = tonumber(value)
  end
  return k
end

-- Returns the source of layout.lua: the cdef string and the constants.
function _M.module(spike_h, rt_h)
  local consts = _M.constants(spike_h)
  local names = {}
  for name in pairs(consts) do names[#names + 1] = name end
  table.sort(names)
  local lines = {
    "-- GENERATED from " .. spike_h .. " and " .. rt_h
      .. " by lua/neuronbus/gen_cdefs.lua: do not edit.",
    "return {",
    "  cdef = [==[",
    _M.generate(spike_h, rt_h) .. "]==],",
    "  constants = {",
  }
  for _, name in ipairs(names) do
    lines[#lines + 1] = string.format("    %s = %d,", name, consts[name])
  end
  lines[#lines + 1] = "  },"
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n") .. "\n"
end

-- Command line: writes the module to OUT through a temporary file so
-- parallel builds never see half a file.
if arg and arg[0] and arg[0]:find("gen_cdefs%.lua$") and arg[3] then
  local out = arg[3]
  local tmp = out .. ".tmp" .. tostring(os.time()) .. tostring(math.random(1e9))
  local f = assert(io.open(tmp, "wb"))
  f:write(_M.module(arg[1], arg[2]))
  f:close()
  assert(os.rename(tmp, out))
end

return _M
