-- The example of docs/tasks.md: an async agent tested with the harness.
local testing = require("neuronbus.testing")
local helpers = require("helpers")

describe("asker", function()
  it("answers after a while, without holding the runtime", function()
    local h = testing.agent("spec/fixtures/docs/asker.lua", { peers = { "me" } })
    h:inject("asker", "why?", { from = "me" })
    h:tick(3)
    assert.same({}, helpers.payloads(h:received("me"))) -- still waiting
    assert.is_true(h:run_until_idle("5s")) -- ticks and waits for the loop
    assert.same({ "answer to why?" }, helpers.payloads(h:received("me")))
    h:close()
  end)
end)
