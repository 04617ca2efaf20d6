local testing = require("neuronbus.testing")

describe("a parser under a memory cap", function()
  it("is restarted with a fresh state after a memory bomb", function()
    local h = testing.agent("spec/fixtures/docs/parser.lua", {
      memory = "16MB", restart = { backoff = "10ms" },
      peers = { "out" }, config = { to = "out" }, refractory = 0, quiet = true,
    })
    h:inject("parser", "hello world")
    h:tick(1)
    assert.equal(1, h:state("parser").parsed)

    h:inject("parser", "a huge input")
    h:tick(1)
    assert.equal("backoff", h:stats("parser").state) -- its spikes wait
    while h:stats("parser").state ~= "running" do h:tick(1) end
    assert.equal(1, h:stats("parser").restarts)
    assert.equal(0, h:state("parser").parsed) -- init ran again

    h:inject("parser", "again")
    h:tick(2)
    local got = {}
    for i, r in ipairs(h:received("out")) do got[i] = r.payload end
    assert.same({ "HELLO", "WORLD", "AGAIN" }, got)
    h:close()
  end)
end)
