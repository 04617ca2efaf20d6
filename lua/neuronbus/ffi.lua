-- neuronbus.ffi: the one FFI binding of NeuronBus.
--
--   local nbffi = require("neuronbus.ffi")
--   nbffi.spike_t            -- ffi.typeof("nb_spike_t")
--   nbffi.KIND               -- { excitatory = 0, inhibitory = 1, modulatory = 2 }
--   nbffi.KIND_NAME          -- { [0] = "excitatory", "inhibitory", "modulatory" }
--   nbffi.constants          -- PAYLOAD_MAX = 46, BROADCAST = 0xFFFF, ...,
--                            -- err = { ENOENT = -14, ... } (NB_ERR_MAP)
--
-- The cdefs and constants are generated from the C headers into
-- neuronbus/layout.lua by the build (lua/neuronbus/gen_cdefs.lua); when that
-- file was never built they are generated from the headers on the spot. They
-- are declared once per LuaJIT state, and the spike metatype is set once:
-- busted restores package.loaded between spec files, so the module itself
-- is kept in the registry and handed back on the next require.
--
-- Spike methods (one ffi.metatype over the 64-byte struct itself; fields
-- read directly: spike.source, .target, .priority, .sequence, .timestamp_ns,
-- .meta; the C field payload is spike.payload_bytes on the Lua side, since
-- a field would shadow the payload() method):
--   spike:kind()     -> "excitatory" | "inhibitory" | "modulatory"
--   spike:kind_id()  -> 0 | 1 | 2
--   spike:payload()  -> the payload as a Lua string of its exact length,
--                       inline or copied from the arena; nil, message when
--                       an arena reference is stale or out of bounds
--   spike:view()     -> ptr, len: the payload in place (const uint8_t *),
--                       no copy; valid only until on_spike returns
--   spike:keep()     -> a kept handle: the payload stays valid until
--                       handle:release() (or the handle is collected);
--                       nil, message past the neuron's keep_max
--   spike:byte(i [, j]) -> payload bytes i..j as numbers (string.byte's
--                       rules), checked: nil out of range
--   spike:len()      -> the payload length in bytes (inline or arena)
--   spike:is_arena() -> true when the payload lives in the arena
--   spike:copy()     -> a new nb_spike_t holding the same 64 bytes; it keeps
--                       no arena payload alive: once that payload's segment
--                       is reused, payload() returns nil, "stale ..."
--
-- Kept handles (nb_rt_kept_t):
--   handle:payload(), handle:len(), handle:view() -> as the spike's
--   handle:spike()   -> the kept spike (valid until release)
--   handle:release() -> true, or nil, message when released already

local REG_KEY = "neuronbus.ffi"
local registry = debug.getregistry()
if registry[REG_KEY] then return registry[REG_KEY] end

local ffi = require("ffi")
local bit = require("bit")

local C = ffi.C
local band, rshift = bit.band, bit.rshift
local ffi_string, ffi_copy = ffi.string, ffi.copy
local tonumber, type = tonumber, type

local _M = { _VERSION = "0.1.0" }

-- Returns the layout module: the built one, or one generated now from the
-- headers of this source tree.
local function layout()
  local ok, mod = pcall(require, "neuronbus.layout")
  if ok then return mod end
  return require("neuronbus.gen_cdefs").layout_from_tree(mod)
end

local L = layout()
ffi.cdef(L.cdef)
_M.cdef = L.cdef
_M.constants = L.constants

local PAYLOAD_MAX = L.constants.PAYLOAD_MAX
local LEN_ARENA = L.constants.LEN_ARENA

_M.KIND = { excitatory = 0, inhibitory = 1, modulatory = 2 }
_M.KIND_NAME = { [0] = "excitatory", "inhibitory", "modulatory" }
local KIND_NAME = _M.KIND_NAME

local spike_t = ffi.typeof("nb_spike_t")
_M.spike_t = spike_t
_M.spike_ptr_t = ffi.typeof("nb_spike_t *")

-- Out-parameters of nb_rt_payload, allocated once per state.
local pdata = ffi.new("const char *[1]")
local plen = ffi.new("size_t[1]")
local bytes_ptr_t = ffi.typeof("const uint8_t *")
local kept_t = ffi.typeof("nb_rt_kept_t")
local ffi_gc, ffi_cast = ffi.gc, ffi.cast

-- The cell of this state's neuron (nil in a process that only inspects
-- spikes: then an arena payload cannot be read).
local bound = nil

-- Binds the spike methods of this state to a neuron cell (its runtime's
-- arena); returns nothing.
function _M.bind(cell)
  bound = cell
end

local methods = {}

-- Returns the kind's name.
function methods.kind(s)
  return KIND_NAME[band(s.meta, 3)]
end

-- Returns the kind's number (0 excitatory, 1 inhibitory, 2 modulatory).
function methods.kind_id(s)
  return band(s.meta, 3)
end

-- Returns true when the payload is an arena reference.
function methods.is_arena(s)
  return rshift(s.meta, 2) == LEN_ARENA
end

-- Returns the payload as a string of its exact length, or nil and a message.
function methods.payload(s)
  local n = rshift(s.meta, 2)
  if n <= PAYLOAD_MAX then
    return ffi_string(s.payload_bytes, n)
  end
  if n ~= LEN_ARENA then
    return nil, "spike:payload(): invalid length " .. n .. " in meta"
  end
  local rc = C.nb_rt_payload(bound, s, pdata, plen)
  if rc ~= 0 then
    return nil, "spike:payload(): " .. ffi_string(C.nb_strerror(rc))
  end
  local str = ffi_string(pdata[0], plen[0])
  -- A copy holds no reference: its segment may have been reused while the
  -- bytes were copied, and then they are not this payload's.
  rc = C.nb_rt_payload_valid(bound, s)
  if rc ~= 0 then
    return nil, "spike:payload(): " .. ffi_string(C.nb_strerror(rc))
  end
  return str
end

-- Returns a pointer to the payload and its length, without a copy; valid
-- only while the spike's reference is held (during on_spike), or nil and
-- a message.
function methods.view(s)
  local n = rshift(s.meta, 2)
  if n <= PAYLOAD_MAX then
    return ffi_cast(bytes_ptr_t, s.payload_bytes), n
  end
  local rc = C.nb_rt_payload(bound, s, pdata, plen)
  if rc ~= 0 then
    return nil, "spike:view(): " .. ffi_string(C.nb_strerror(rc))
  end
  return ffi_cast(bytes_ptr_t, pdata[0]), tonumber(plen[0])
end

-- Releases a kept handle that was collected without release().
local function kept_gc(k)
  C.nb_rt_kept_release(bound, k)
end

-- Returns a handle keeping the spike's payload alive past on_spike, or nil
-- and a message (keep_max reached, or the payload is gone).
function methods.keep(s)
  local k = kept_t()
  local rc = C.nb_rt_keep(bound, s, k)
  if rc ~= 0 then
    return nil, "spike:keep(): " .. ffi_string(C.nb_strerror(rc))
  end
  return ffi_gc(k, kept_gc)
end

-- Returns the payload bytes i..j (string.byte's rules, j defaults to i),
-- checked against the payload's length: nil out of range (the sandbox's
-- spikes have the same method).
function methods.byte(s, i, j)
  local n = rshift(s.meta, 2)
  if type(i) ~= "number" then i = 1 end
  if n <= PAYLOAD_MAX and (j == nil or j == i) and i >= 1 and i <= n
    and i % 1 == 0 then
    return s.payload_bytes[i - 1]
  end
  local str, err = methods.payload(s)
  if not str then return nil, err end
  return str:byte(i, j or i)
end

-- Returns the payload length in bytes, or nil and a message.
function methods.len(s)
  local n = rshift(s.meta, 2)
  if n <= PAYLOAD_MAX then return n end
  local rc = C.nb_rt_payload(bound, s, pdata, plen)
  if rc ~= 0 then
    return nil, "spike:len(): " .. ffi_string(C.nb_strerror(rc))
  end
  return tonumber(plen[0])
end

-- Returns a copy of the spike that outlives the call it was handed to.
function methods.copy(s)
  local c = spike_t()
  ffi_copy(c, s, 64)
  return c
end

local kept = {}

-- Returns the kept spike, or nil and a message once released.
function kept.spike(k)
  local s = C.nb_rt_kept_spike(bound, k)
  if s == nil then return nil, "kept payload: released already" end
  return s
end

function kept.payload(k)
  local s, err = kept.spike(k)
  if not s then return nil, err end
  return methods.payload(s)
end

function kept.view(k)
  local s, err = kept.spike(k)
  if not s then return nil, err end
  return methods.view(s)
end

function kept.len(k)
  local s, err = kept.spike(k)
  if not s then return nil, err end
  return methods.len(s)
end

-- Releases the payload; returns true, or nil and a message.
function kept.release(k)
  if k.serial == 0 then return nil, "kept payload: released already" end
  ffi_gc(k, nil)
  local rc = C.nb_rt_kept_release(bound, k)
  if rc ~= 0 then
    return nil, "kept payload: " .. ffi_string(C.nb_strerror(rc))
  end
  return true
end

ffi.metatype(kept_t, {
  __index = kept,
  __tostring = function(k)
    return string.format("kept payload(%s)",
      k.serial == 0 and "released" or ((kept.len(k) or "?") .. " bytes"))
  end,
})

ffi.metatype(spike_t, {
  __index = methods,
  __tostring = function(s)
    return string.format("spike(%d -> %d, %s, priority %d, seq %d, %d bytes)",
      s.source, s.target, methods.kind(s), s.priority, s.sequence,
      methods.len(s) or -1)
  end,
})

registry[REG_KEY] = _M
return _M
