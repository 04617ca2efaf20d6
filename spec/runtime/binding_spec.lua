-- The FFI binding: the generated cdefs against the C compiler's layout,
-- the spike metatype, and payloads of every size through the real runtime.
local ffi = require("ffi")
local nbffi = require("neuronbus.ffi")
local testing = require("neuronbus.testing")
local helpers = require("helpers")

local R = testing.lib()

describe("the spike cdef", function()
  it("is generated from core/nb_spike.h, not kept by hand", function()
    local f = assert(io.open("lua/neuronbus/layout.lua"))
    local text = f:read("*a")
    f:close()
    assert.truthy(text:find("GENERATED from core/nb_spike.h", 1, true))
    -- the generator reproduces it from the headers as they are now
    local gen = require("neuronbus.gen_cdefs")
    assert.equal(gen.module("core/nb_spike.h", "runtime/nb_rt_ffi.h"), text)
  end)

  it("matches offsetof and sizeof as compiled into the runtime", function()
    local c = R.nb_rt_layout(ffi.new("nb_rt_layout_t"))
    assert.equal(c.size, ffi.sizeof("nb_spike_t"))
    assert.equal(64, c.size)
    assert.equal(c.align, ffi.alignof("nb_spike_t"))
    for _, field in ipairs({ "timestamp_ns", "sequence", "source", "target",
                             "meta", "priority" }) do
      assert.equal(c[field], ffi.offsetof("nb_spike_t", field), field)
    end
    -- C's payload is payload_bytes on the Lua side (payload() is a method)
    assert.equal(c.payload, ffi.offsetof("nb_spike_t", "payload_bytes"))
    assert.equal(c.payload_size, ffi.sizeof(ffi.new("nb_spike_t").payload_bytes))
    assert.equal(c.ref_size, ffi.sizeof("nb_arena_ref_t"))
    assert.equal(c.ref_offset, ffi.offsetof("nb_arena_ref_t", "offset"))
    assert.equal(c.ref_len, ffi.offsetof("nb_arena_ref_t", "len"))
    assert.equal(c.ref_slot, ffi.offsetof("nb_arena_ref_t", "ref_slot"))
    assert.equal(c.ref_epoch, ffi.offsetof("nb_arena_ref_t", "epoch"))
    assert.equal(c.ref_reserved, ffi.offsetof("nb_arena_ref_t", "reserved"))
  end)

  it("exports the header's constants", function()
    assert.same({ ARENA_MARKER = 0xA0, BROADCAST = 0xFFFF, LEN_ARENA = 63,
                  PAYLOAD_MAX = 46, SPIKE_SIZE = 64 }, nbffi.constants)
  end)

  it("is declared once per state even when busted reloads modules", function()
    package.loaded["neuronbus.ffi"] = nil
    assert.equal(nbffi, require("neuronbus.ffi"))
  end)
end)

describe("the spike metatype", function()
  -- Builds a spike in this state the way C lays it out.
  local function spike(kind, len, payload)
    local s = nbffi.spike_t()
    s.source, s.target, s.priority, s.sequence = 3, 9, 200, 77
    s.timestamp_ns = 123456789012ULL
    s.meta = kind + len * 4
    ffi.copy(s.payload_bytes, payload, #payload)
    return s
  end

  it("reads the fields and the kind", function()
    local s = spike(1, 5, "hello")
    assert.equal(3, s.source)
    assert.equal(9, s.target)
    assert.equal(200, s.priority)
    assert.equal(77, s.sequence)
    assert.equal(123456789012ULL, s.timestamp_ns)
    assert.equal("inhibitory", s:kind())
    assert.equal(1, s:kind_id())
    assert.equal("excitatory", spike(0, 0, ""):kind())
    assert.equal("modulatory", spike(2, 0, ""):kind())
  end)

  it("returns inline payloads with their exact length, zero bytes included", function()
    assert.equal("", spike(0, 0, ""):payload())
    assert.equal("a\0b\0", spike(0, 4, "a\0b\0"):payload())
    local full = helpers.bytes(46)
    assert.equal(full, spike(0, 46, full):payload())
    assert.equal(46, spike(0, 46, full):len())
    assert.is_false(spike(0, 46, full):is_arena())
    -- an inline payload starting with the arena marker is still inline
    assert.equal("\160xyz", spike(0, 4, "\160xyz"):payload())
  end)

  it("copies a spike that outlives the original", function()
    local s = spike(2, 3, "abc")
    local c = s:copy()
    s.meta = 0
    ffi.fill(s.payload_bytes, 46)
    assert.equal("abc", c:payload())
    assert.equal("modulatory", c:kind())
    assert.equal(77, c.sequence)
    assert.truthy(ffi.istype("nb_spike_t", c))
  end)

  it("reports an arena payload it cannot read instead of inventing bytes", function()
    local s = spike(0, 63, "\160")
    assert.is_true(s:is_arena())
    local p, err = s:payload()
    assert.is_nil(p)
    assert.matches("invalid argument", err) -- no arena in this state
  end)
end)

describe("payloads through the runtime", function()
  -- echo fires every payload back to its source; sink records it.
  for _, n in ipairs({ 0, 1, 46, 47, 1024 * 1024 }) do
    it("round-trip " .. n .. " bytes exactly", function()
      local h = testing.agent(helpers.fixture("runtime/echo.lua"),
        { refractory = 0, peers = { "sink" } })
      local data = helpers.bytes(n, n + 1)
      h:inject("echo", data, { from = "sink" })
      h:tick(3)
      local back = h:received("sink")
      assert.equal(1, #back)
      assert.equal(n, #back[1].payload)
      assert.is_true(back[1].payload == data)
      assert.equal("echo", back[1].source)
      assert.equal(h:id("echo"), back[1].source_id)
      h:close()
    end)
  end
end)
