-- agents/tcp_asker.lua and agents/tcp_squarer.lua (the two-process
-- topology of agents/tcp_front.lua and agents/tcp_back.lua) through the
-- harness, in one process: over TCP they behave the same, since a remote
-- neuron is addressed like a local one (spec/e2e/tcp_agents.sh runs the
-- two manifests as two processes).
local testing = require("neuronbus.testing")

describe("agents/tcp_squarer.lua", function()
  local h
  before_each(function()
    h = testing.agent("agents/tcp_squarer.lua", { name = "squarer", refractory = 0,
      peers = { "asker" } })
  end)
  after_each(function() h:close() end)

  it("answers the asker, whoever it is", function()
    h:inject("squarer", "square 7", { from = "asker" })
    h:inject("squarer", "square -3", { from = "asker" })
    h:tick(3)
    local got = h:received("asker")
    assert.equal(2, #got)
    assert.equal("7^2 = 49", got[1].payload)
    assert.equal("-3^2 = 9", got[2].payload)
    assert.equal("squarer", got[1].source)
  end)

  it("counts the bytes of a large question", function()
    h:inject("squarer", "size " .. string.rep("x", 100000), { from = "asker" })
    h:tick(3)
    assert.equal("100000 bytes", h:received("asker")[1].payload)
  end)

  it("says what it does not understand", function()
    h:inject("squarer", "cube 2", { from = "asker" })
    h:tick(3)
    assert.equal("? cube 2", h:received("asker")[1].payload)
  end)
end)

describe("agents/tcp_asker.lua", function()
  it("asks one question a tick, then a 100 KB one, and counts answers", function()
    local h = testing.agent("agents/tcp_asker.lua", { name = "asker",
      threshold = 0, refractory = 0, config = { to = "squarer", count = 3 },
      peers = { "squarer" } })
    h:tick(10)
    local q = h:received("squarer")
    assert.equal(4, #q)
    assert.equal("square 1", q[1].payload)
    assert.equal("square 3", q[3].payload)
    assert.equal(100005, #q[4].payload)
    h:inject("asker", "1^2 = 1", { from = "squarer" })
    h:tick(2)
    assert.equal(1, h:state("asker").answers)
    h:close()
  end)
end)
