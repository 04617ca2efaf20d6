local testing = require("neuronbus.testing")

describe("hot reload of the counter", function()
  it("keeps nb.state, runs the new code, rejects a broken version", function()
    local h = testing.agent("spec/fixtures/reload/counter.lua",
      { refractory = 0, quiet = true })
    h:inject("counter", "a")
    h:tick(1)
    assert.equal(1, h:state("counter").count)

    -- version 2 counts by tens
    local f = io.open("spec/fixtures/reload/counter.lua")
    local v2 = f:read("*a"):gsub("count %+ 1", "count + 10")
    f:close()
    assert.is_true(h:reload("counter", v2))
    h:inject("counter", "b")
    h:tick(1)
    assert.equal(11, h:state("counter").count) -- the count was kept
    assert.equal(1, h:state("counter").reloaded_from)
    assert.equal(2, h:version("counter").counter)

    -- a broken version is rejected: version 2 keeps running
    local ok, err = h:reload("counter", "local agent = {\nreturn agent\n")
    assert.is_nil(ok)
    assert.matches("counter%.lua:2: unexpected symbol near 'return'", err)
    h:inject("counter", "c")
    h:tick(1)
    assert.equal(21, h:state("counter").count)
    local v = h:version("counter") -- { counter =, hash =, reloads =, rejected = }
    assert.equal(2, v.counter)
    assert.equal(1, v.rejected)
    h:close()
  end)
end)
