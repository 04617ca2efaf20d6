-- One LuaJIT in the busted process: Debian's /usr/bin/luajit is linked
-- statically and exports the Lua C API. libnbruntime.so is built without
-- linking libluajit, so its lua_* calls bind to the host's copy, and every
-- state it creates is made and driven by the same LuaJIT as busted's own.
local ffi = require("ffi")
local testing = require("neuronbus.testing")
local helpers = require("helpers")

ffi.cdef([[
  void *lua_newstate(void *f, void *ud);
  void *dlsym(void *handle, const char *symbol);
]])

local R = testing.lib()

-- Returns the lines of /proc/self/maps naming a file that matches pattern.
local function mapped(pattern)
  local out = {}
  for line in io.lines("/proc/self/maps") do
    if line:find(pattern) then out[#out + 1] = line end
  end
  return out
end

describe("one LuaJIT copy", function()
  it("the runtime's lua_newstate is the busted process's own", function()
    local mine = ffi.cast("void *", ffi.C.lua_newstate)
    local runtime = R.nb_rt_lua_newstate_addr()
    assert.equal(tostring(ffi.cast("uintptr_t", mine)), tostring(ffi.cast("uintptr_t", runtime)))
    -- and it is the one of the main program (dlsym(RTLD_DEFAULT) finds the
    -- first definition in load order: the executable)
    local default = ffi.C.dlsym(nil, "lua_newstate")
    assert.equal(tostring(ffi.cast("uintptr_t", default)), tostring(ffi.cast("uintptr_t", runtime)))
  end)

  it("libluajit-5.1.so is not loaded into the process", function()
    testing.agent(helpers.fixture("runtime/echo.lua")):close()
    assert.same({}, mapped("libluajit"))
    assert.is_true(#mapped("libnbruntime%.so") > 0)
  end)

  it("libnbruntime.so has no dependency on libluajit", function()
    local out = helpers.sh("ldd " .. helpers.build() .. "/libnbruntime.so")
    assert.is_nil(out:find("luajit"), out)
    -- the Lua C API is left undefined, to be bound at load time
    local undef = helpers.sh("nm -D --undefined-only " .. helpers.build()
      .. "/libnbruntime.so")
    assert.truthy(undef:find(" luaL_newstate\n", 1, true), undef)
    assert.truthy(undef:find(" lua_pcall\n", 1, true), undef)
    local defined = helpers.sh("nm -D --defined-only " .. helpers.build()
      .. "/libnbruntime.so")
    assert.is_nil(defined:find(" lua_pcall\n", 1, true))
  end)

  it("agent states created there run and use the FFI against the same process", function()
    local h = testing.agent(helpers.fixture("runtime/echo.lua"), { refractory = 0, peers = { "sink" } })
    h:inject("echo", "ping", { from = "sink" })
    h:tick(3)
    assert.same({ "ping" }, helpers.payloads(h:received("sink")))
    h:close()
  end)
end)
