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
    assert.equal(gen.module("core/nb_spike.h", "runtime/nb_rt_ffi.h", gen.constant_headers()), text)
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
    assert.equal(c.ref_segment, ffi.offsetof("nb_arena_ref_t", "segment"))
    assert.equal(c.ref_gen, ffi.offsetof("nb_arena_ref_t", "gen"))
    assert.equal(c.ref_reserved, ffi.offsetof("nb_arena_ref_t", "reserved"))
  end)

  it("exports the header's constants", function()
    local k = nbffi.constants
    assert.same({ ARENA_MARKER = 0xA0, BROADCAST = 0xFFFF, LEN_ARENA = 63,
                  PAYLOAD_MAX = 46, SPIKE_SIZE = 64 },
                { ARENA_MARKER = k.ARENA_MARKER, BROADCAST = k.BROADCAST,
                  LEN_ARENA = k.LEN_ARENA, PAYLOAD_MAX = k.PAYLOAD_MAX,
                  SPIKE_SIZE = k.SPIKE_SIZE })
  end)

  it("exports every error code of NB_ERR_MAP, as C knows them", function()
    local errs = nbffi.constants.err
    assert.equal(-14, errs.ENOENT)
    assert.equal(-3, errs.EFULL)
    local names = {}
    for name, code in pairs(errs) do
      assert.are_not.equal("unknown error", ffi.string(R.nb_strerror(code)), name)
      names[code] = name
    end
    -- and C knows no code the map lacks
    local code = -1
    while ffi.string(R.nb_strerror(code)) ~= "unknown error" do
      assert.truthy(names[code], "code " .. code .. " is missing from constants.err")
      code = code - 1
    end
    assert.equal(27, -code - 1)
  end)

  it("exports the limits and defaults of the CONSTANTS blocks", function()
    local k = nbffi.constants
    assert.equal(16, k.CARD_MAX_TAGS)
    assert.equal(16, k.FILTER_PREFIX_MAX)
    assert.equal(32, k.FILTER_NAME_MAX)
    assert.equal(4, k.FILTERS_MAX)
    assert.equal(0xFFFF, k.MAX_NEURONS)
    assert.equal(4096, k.AXON_DEFAULT)
    assert.equal(1048576, k.FRAME_PAYLOAD_DEFAULT_MAX)
    assert.equal(5, k.RESTART_MAX)
    assert.equal(60000000000, k.RESTART_WINDOW_NS)
    assert.equal(100000000, k.RESTART_BACKOFF_NS)
    assert.equal(10000000000, k.RESTART_BACKOFF_MAX_NS)
    assert.equal(16777216, k.ARENA_DEFAULT)
    assert.equal(1000000, k.TICK_DEFAULT_NS)
  end)

  it("reads literals, shifts and earlier names in a CONSTANTS block, and refuses the rest", function()
    local gen = require("neuronbus.gen_cdefs")
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local function header(name, text)
      local f = assert(io.open(dir .. "/" .. name, "w"))
      f:write(text)
      f:close()
      return dir .. "/" .. name
    end
    local a = header("a.h", "#define NB_OUTSIDE 7\n/* BEGIN CONSTANTS */\n"
      .. "#define NB_A 0x10u /* sixteen */\n#define NB_B (4u << 20)\n"
      .. "/* END CONSTANTS */\n#define NB_AFTER 9\n")
    local b = header("b.h", "/* BEGIN CONSTANTS: more */\n#define NB_C NB_A\n"
      .. "#define NB_D 60000000000ull\n/* END CONSTANTS */\n")
    local bad = header("bad.h", "/* BEGIN CONSTANTS */\n#define NB_E (NB_A + 1)\n"
      .. "/* END CONSTANTS */\n")
    local k = gen.shared_constants({ a, b })
    assert.same({ NB_A = 16, NB_B = 4194304, NB_C = 16, NB_D = 60000000000 }, k)
    local ok, err = pcall(gen.shared_constants, { a, bad })
    assert.is_false(ok)
    assert.matches("bad.h: NB_E is not a number this generator reads", err, 1, true)
    os.execute("rm -rf " .. dir)
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
