-- agents/ping.lua and agents/pong.lua through the harness, alone with a
-- recorder peer and together through agents/pingpong.lua.
local testing = require("neuronbus.testing")

local function payloads(records)
  local out = {}
  for i, r in ipairs(records) do
    out[i] = r.payload
  end
  return out
end

describe("agents/ping.lua", function()
  local h
  before_each(function()
    h = testing.agent("agents/ping.lua", {
      name = "ping", threshold = 0, refractory = 0,
      config = { peer = "pong", rounds = 3 }, peers = { "pong" },
    })
  end)
  after_each(function()
    h:close()
  end)

  it("serves once on its first tick", function()
    h:tick(5)
    assert.same({ "ping 1" }, payloads(h:received("pong")))
    assert.equal("ping", h:received("pong")[1].source)
    assert.equal(1, h:state("ping").sent)
  end)

  it("returns each pong as the next ping, and stops after the last round", function()
    h:tick(2)
    h:inject("ping", "pong 1", { from = "pong" })
    h:tick(3)
    h:inject("ping", "pong 2", { from = "pong" })
    h:tick(3)
    h:inject("ping", "pong 3", { from = "pong" })
    h:tick(3)
    assert.same({ "ping 1", "ping 2", "ping 3" }, payloads(h:received("pong")))
    local s = h:state("ping")
    assert.equal(3, s.returned)
    assert.is_true(s.done)
  end)

  it("ignores what is not a pong", function()
    h:tick(2)
    h:inject("ping", "hello", { from = "pong" })
    h:tick(3)
    assert.same({ "ping 1" }, payloads(h:received("pong")))
    assert.equal(0, h:state("ping").returned)
  end)
end)

describe("agents/pong.lua", function()
  local h
  before_each(function()
    h = testing.agent("agents/pong.lua", { name = "pong", peers = { "a", "b" } })
  end)
  after_each(function()
    h:close()
  end)

  it("replies to the sender of each ping", function()
    h:inject("pong", "ping 7", { from = "a" })
    h:tick(5)
    h:inject("pong", "ping 8", { from = "b" })
    h:tick(5)
    assert.same({ "pong 7" }, payloads(h:received("a")))
    assert.same({ "pong 8" }, payloads(h:received("b")))
    assert.equal("pong", h:received("a")[1].source)
    assert.equal(2, h:state("pong").returned)
  end)

  it("counts and ignores anything else", function()
    h:inject("pong", "pong 1", { from = "a" })
    h:tick(3)
    assert.same({}, h:received("a"))
    assert.equal(1, h:state("pong").ignored)
  end)
end)

describe("agents/pingpong.lua", function()
  it("plays ten rounds", function()
    local h = testing.manifest("agents/pingpong.lua")
    h:tick(200)
    local ping, pong = h:state("ping"), h:state("pong")
    assert.is_true(ping.done)
    assert.equal(10, ping.returned)
    assert.equal(10, ping.sent)
    assert.equal(10, pong.returned)
    assert.equal(0, h:stats("ping").errors)
    assert.equal(0, h:stats("pong").errors)
    h:close()
  end)
end)
