-- agents/llm.lua against the fake OpenAI-compatible endpoint of
-- spec/fixtures/http/fake_server.py: streamed tokens back to the asker,
-- the done marker, the API key from the environment variable named in
-- config, an HTTP 500 and a timeout as error spikes; and the whole demo
-- agents/llm_demo.lua (planner -> llm -> sink), streaming.
local testing = require("neuronbus.testing")
local fake = dofile("spec/fixtures/http/fake.lua")

local srv
setup(function() srv = fake.start() end)
teardown(function() srv.stop() end)

-- Returns the payloads neuron who received.
local function got(h, who)
  local out = {}
  for i, r in ipairs(h:received(who)) do out[i] = r.payload end
  return out
end

-- Ticks until who received a payload matching pattern; returns them all.
local function until_got(h, who, pattern, secs)
  return fake.wait(h, function(hh)
    local p = got(hh, who)
    for _, x in ipairs(p) do if x:match(pattern) then return p end end
  end, secs or 10)
end

describe("agents/llm.lua", function()
  local function llm(model, extra)
    local config = { url = srv.url("/v1/chat/completions"), model = model }
    for k, v in pairs(extra or {}) do config[k] = v end
    return testing.agent("agents/llm.lua", { name = "llm", threshold = 0,
      refractory = 0, config = config, peers = { "asker" } })
  end

  it("streams the answer back to the asker token by token, then done", function()
    local h = llm("fake")
    h:inject("llm", "tell me a story", { from = "asker" })
    local p = assert(until_got(h, "asker", "^done$"))
    assert.same({ "token echo: ", "token tell ", "token me ", "token a ", "token story", "done" }, p)
    assert.same({}, h:errors("llm"))
    assert.equal(1, h:state("llm").answered)
    h:close()
  end)

  it("answers several askers at once", function()
    local h = testing.agent("agents/llm.lua", { name = "llm", threshold = 0, refractory = 0,
      config = { url = srv.url("/v1/chat/completions"), model = "slow" }, peers = { "a", "b" } })
    h:inject("llm", "one two", { from = "a" })
    h:inject("llm", "three four", { from = "b" })
    assert.truthy(until_got(h, "a", "^done$"))
    assert.truthy(until_got(h, "b", "^done$"))
    assert.same({ "token echo: ", "token one ", "token two", "done" }, got(h, "a"))
    assert.same({ "token echo: ", "token three ", "token four", "done" }, got(h, "b"))
    h:close()
  end)

  it("replies with an error spike on an HTTP error, with the API's message", function()
    local h = llm("fail-500")
    h:inject("llm", "hi", { from = "asker" })
    local p = assert(until_got(h, "asker", "^error"))
    assert.equal(1, #p)
    assert.matches("^error HTTP 500 from http://127%.0%.0%.1:%d+/v1/chat/completions: the model fell over$", p[1])
    h:close()
  end)

  it("replies with an error spike on a timeout and a refused connection", function()
    local h = llm("hang", { timeout = "300ms" })
    h:inject("llm", "hi", { from = "asker" })
    local p = assert(until_got(h, "asker", "^error"))
    assert.matches("^error nb%.http%.stream: POST http://127%.0%.0%.1:%d+/v1/chat/completions: .*timed out", p[1])
    h:close()
    h = testing.agent("agents/llm.lua", { name = "llm", threshold = 0, refractory = 0,
      config = { url = "http://127.0.0.1:1/v1/chat/completions", model = "m" }, peers = { "asker" } })
    h:inject("llm", "hi", { from = "asker" })
    p = assert(until_got(h, "asker", "^error"))
    assert.matches("^error nb%.http%.stream: POST http://127%.0%.0%.1:1/v1/chat/completions: ", p[1])
    h:close()
  end)
end)

describe("agents/llm_demo.lua", function()
  it("planner -> llm -> sink, streaming, against an OpenAI-compatible server", function()
    -- The demo's manifest, pointed at the fake server (the sink quiet).
    local src = assert(io.open("agents/llm_demo.lua")):read("*a")
    src = src:gsub("http://127%.0%.0%.1:8080", srv.base)
      :gsub('sink = { script = "sink.lua", threshold = 0, refractory = 0 }',
            'sink = { script = "sink.lua", threshold = 0, refractory = 0, config = { quiet = true } }')
    local path = "agents/.llm_demo_spec.lua"
    local f = assert(io.open(path, "w"))
    f:write(src)
    f:close()
    local ok, h = pcall(testing.manifest, path, { quiet = true })
    os.remove(path)
    assert(ok, h)
    local answers = fake.wait(h, function(hh)
      local g = hh:state("sink").got
      return #g >= 2 and g
    end, 15)
    assert.same({ "answer echo: Say hello in five words.", "answer echo: Name three colours." }, answers)
    assert.same({}, h:errors("llm"))
    assert.same({}, h:errors("planner"))
    h:close()
  end)
end)
