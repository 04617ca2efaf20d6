-- spec/unit/no_runtime.lua: the busted helper of the unit tier (.busted,
-- task "unit"). The unit tier is pure Lua: any attempt to load a native
-- library (libnbruntime through neuronbus.testing, or another) fails the
-- spec that makes it, with where such a spec belongs.
local ffi = require("ffi")

ffi.load = function(name)
  error("spec/unit runs without native libraries (ffi.load(\"" .. tostring(name)
    .. "\")): a spec that needs the runtime belongs in spec/runtime", 2)
end
