-- neuronbus.manifest.workers: the keys that spread a topology over worker
-- threads (docs/workers.md).
--
--   workers   = 2 | "auto",   -- worker threads; "auto": one per CPU the
--                             -- process may run on; 1 (the default): one
--                             -- thread, deterministic
--   placement = "round-robin" | "hash" | "region",
--                             -- where a neuron without `worker` goes: by
--                             -- its place in name order, by a hash of its
--                             -- name, or by a hash of its first region
--   pin       = false,        -- pin each worker thread to one CPU
--   neurons = { x = { worker = 0, ... } }  -- 0 .. workers-1
--
-- Normalized: topo.workers (0 = "auto"), topo.placement, topo.pin;
-- a neuron's worker (nil when not given).

local check = require("neuronbus.manifest.check")
local units = require("neuronbus.units")

local type, ipairs = type, ipairs
local show = units.show
local K = check.K

local _M = {}

_M.TOP_KEYS = { "workers", "placement", "pin" }
_M.PLACEMENTS = { "round-robin", "hash", "region" }

_M.NEURON_ENTRIES = {
  { key = "worker",
    check = function(c, path, v)
      return c:integer(path, v, nil, 0, K.MAX_WORKERS - 1)
    end },
}

-- Checks the top-level keys of tbl into topo (after the neurons), and each
-- neuron's worker against the count; returns nothing.
function _M.check(c, tbl, topo)
  local n = tbl.workers
  if n == nil then
    topo.workers = 1
  elseif n == "auto" then
    topo.workers = 0
  elseif type(n) == "number" then
    topo.workers = c:integer("workers", n, nil, 1, K.MAX_WORKERS)
  else
    c:wrong("workers", 'a number of workers or "auto"', n)
  end
  if tbl.placement == nil then
    topo.placement = "round-robin"
  else
    topo.placement = c:one_of("placement", tbl.placement, _M.PLACEMENTS)
  end
  if tbl.pin == nil then
    topo.pin = false
  else
    topo.pin = c:boolean("pin", tbl.pin)
  end
  local count = topo.workers
  for _, nr in ipairs(topo.neurons or {}) do
    if nr.worker and count and count > 0 and nr.worker >= count then
      c:fail("neurons." .. nr.name .. ".worker",
             "%s is out of range: workers = %d gives workers 0 to %d",
             show(nr.worker), count, count - 1)
    end
  end
end

return _M
