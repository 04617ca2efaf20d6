-- Recursion through C functions (gsub/find callbacks, coroutine.wrap,
-- table.sort comparators) runs a thread's C stack out;
-- it must be an agent fault with a clear message, never the process's end,
-- and a bystander flow goes on.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

local DEEP = helpers.fixture("cstack/deep.lua")

-- Checks that the bystander got all n spikes, then that "deep" answers a
-- harmless spike; closes the harness.
local function goes_on(h, n)
  assert.equal(n, #h:received("by"))
  h:inject("deep", "fine")
  assert.is_true(h:run_until_idle("5s"))
  assert.is_true(h:state("deep").done >= 1)
  h:close()
end

for _, how in ipairs({ "gsub", "find", "wrap", "sort" }) do
  describe("recursion through " .. how, function()
    it("is the neuron's fault, not the process's; it restarts and goes on", function()
      local h = testing.agent(DEEP, { name = "deep", quiet = true, peers = { "by" },
        restart = { backoff = "1ms", backoff_max = "1ms" } })
      h:inject("deep", how)
      for _ = 1, 20 do h:inject("by", "bystander") end
      assert.is_true(h:run_until_idle("10s"))
      local st = h:stats("deep")
      local errs = h:errors("deep")
      assert.equal(1, #errs)
      if how == "sort" then
        -- A comparator's recursion runs LuaJIT's own (Lua) stack out
        -- first: an ordinary error, the agent goes on.
        assert.matches("stack overflow", errs[1])
      else
        assert.equal(1, st.restarts)
        assert.matches("C stack overflow", errs[1])
      end
      goes_on(h, 20)
    end)
  end)
end

-- __tostring calling tostring on its object: tostring runs __tostring as
-- a tail call, so unbounded this loops forever in constant stack (with the
-- JIT on, in compiled code: nothing interrupts it), holding the loop
-- thread. It must be an agent error, sandboxed or not, and a bystander
-- flow must carry on across it.
for _, how in ipairs({ "tostring_self", "tostring_print", "tostring_loop",
                       "tostring_error_rec", "tostring_error_raises" }) do
  for _, sandbox in ipairs({ false, true }) do
    describe(how .. (sandbox and " (sandboxed)" or ""), function()
      it("is an agent error; the bystander flow goes on", function()
        local h = testing.agent(DEEP, { name = "deep", quiet = true, peers = { "by" },
          sandbox = sandbox, restart = { backoff = "1ms", backoff_max = "1ms" } })
        for _ = 1, 10 do h:inject("by", "before") end
        assert.is_true(h:run_until_idle("5s"))
        assert.equal(10, #h:received("by"))
        h:inject("deep", how)
        for _ = 1, 10 do h:inject("by", "after") end
        assert.is_true(h:run_until_idle("10s"))
        local errs = h:errors("deep")
        assert.equal(1, #errs)
        if how == "tostring_error_raises" then
          assert.matches("error in error handling: the error could not be "
            .. "turned into a message", errs[1])
        else
          -- the recursion ends in a Lua stack overflow (raised in the
          -- message handler itself for an error object: same report)
          assert.truthy(errs[1]:find("stack overflow", 1, true)
            or errs[1]:find("error in error handling", 1, true), errs[1])
        end
        goes_on(h, 20)
      end)
    end)
  end
end
