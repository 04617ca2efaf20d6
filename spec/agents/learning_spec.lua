-- agents/learning.lua through the harness, in real time (1 ms ticks: the
-- learning rule's time constants are in milliseconds): the router's
-- weights diverge toward the best worker, which ends with the highest
-- weight and the most work. Seeded choices and mistakes; the bound is
-- statistical (the expected margins are wide), not a timing.
local testing = require("neuronbus.testing")

-- Runs h for n ticks of 1 ms of real time each.
local function run_ms(h, n)
  local R = testing.lib()
  local t0 = R.nb_rt_now_ns()
  for i = 1, n do
    h:tick(1)
    while R.nb_rt_now_ns() - t0 < i * 1e6 do end
  end
end

describe("agents/learning.lua", function()
  it("learns to send most work to the best worker", function()
    local h = testing.manifest("agents/learning.lua")
    run_ms(h, 4000) -- 4 s: about 800 requests
    local router, evaluator = h:state("learn-router"), h:state("evaluator")
    assert.is_true(router.routed >= 600, "routed " .. router.routed)
    local w = {}
    for _, name in ipairs({ "good", "fair", "poor" }) do
      w[name] = h:weight("learn-router", name)
      assert.equal(0, h:stats(name).errors, name)
    end
    local msg = string.format("weights good %.3f fair %.3f poor %.3f; sent %s",
      w.good, w.fair, w.poor, require("neuronbus.serial").dump(router.sent))
    assert.is_true(w.good > w.fair and w.good > w.poor, msg)
    assert.is_true(w.good > 0.8, msg) -- it moved up from 0.5
    local sent = router.sent
    assert.is_true((sent.good or 0) > (sent.fair or 0) and (sent.good or 0) > (sent.poor or 0), msg)
    -- Most of the work: over half of it in 4 s (the rest is exploration
    -- and the time before the good worker's weight took the lead).
    assert.is_true((sent.good or 0) > router.routed / 2, msg)
    assert.equal(router.routed, evaluator.rewarded)
    assert.equal(router.routed, h:learning().rewards)
    h:close()
  end)
end)
