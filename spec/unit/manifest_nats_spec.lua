-- Specs for the manifest's nats section and nats:// remote neurons
-- (neuronbus.manifest.nats): each problem reported with its key path, and
-- good manifests normalizing (docs/nats.md).

local FIXTURES = "spec/fixtures/manifests"

local with, fails_at, ok = require("helpers").manifest_cases(FIXTURES, assert)

local URL = "nats://127.0.0.1:4222"

describe("manifest nats section", function()
  it("normalizes url, cluster, credentials and the window with defaults", function()
    local topo = ok(with({ nats = { url = URL, cluster = "prod", user = "app",
      password = "pw" } }, { w = { remote = "nats://other/w" } }))
    local n = topo.transport.nats
    assert.same({ url = URL, cluster = "prod", user = "app", password = "pw",
      window = 16384, window_bytes = 16 * 1024 * 1024, batch_bytes = 65536,
      resend_ms = 500, announce_ms = 1000, connect_ms = 2000 }, n)
    for _, x in ipairs(topo.neurons) do
      if x.name == "w" then
        assert.same({ nats = true, cortex = "other", neuron = "w" }, x.remote)
      end
    end
  end)

  it("takes a token from the environment and durations and sizes", function()
    local n = ok(with({ nats = { url = URL .. ",tls://10.0.0.2:4222",
      token = { env = "HOME" }, window = 100, batch = "8KB", resend = "50ms",
      announce = "2s" } })).transport.nats
    assert.equal(os.getenv("HOME"), n.token)
    assert.equal(100, n.window)
    assert.equal(8192, n.batch_bytes)
    assert.equal(50, n.resend_ms)
    assert.equal(2000, n.announce_ms)
  end)

  it("names each bad key", function()
    fails_at(with({ nats = { url = "http://x:1" } }), "nats.url", "is not a NATS server url")
    fails_at(with({ nats = {} }), "nats.url", "missing")
    fails_at(with({ nats = { url = URL, bogus = 1 } }), "nats.bogus", "unknown key")
    fails_at(with({ nats = { url = URL, user = "u" } }), "nats.password", "needs a password")
    fails_at(with({ nats = { url = URL, password = "p" } }), "nats.password", "needs user")
    fails_at(with({ nats = { url = URL, token = "t", creds = "agents/echo.lua" } }),
      "nats.creds", "give one way to authenticate")
    fails_at(with({ nats = { url = URL, creds = "missing.creds" } }), "nats.creds", "cannot read")
    fails_at(with({ nats = { url = URL, nkey = { public = "bad", seed = "agents/echo.lua" } } }),
      "nats.nkey.public", "public key")
    fails_at(with({ nats = { url = URL, tls = { cert = "agents/echo.lua" } } }),
      "nats.tls.key", "needs both cert and key")
    fails_at(with({ nats = { url = URL, window = 0 } }), "nats.window", "out of range")
    fails_at(with({ nats = { url = URL, token = { env = "NB_NO_SUCH_VARIABLE_HERE" } } }),
      "nats.token.env", "is not set")
  end)

  it("checks nats:// remotes and wants the section for them", function()
    fails_at(with({}, { w = { remote = "nats://other/w" } }), "neurons.w.remote",
      "needs the nats section")
    fails_at(with({ nats = { url = URL } }, { w = { remote = "nats://other/" } }),
      "neurons.w.remote", "bad neuron name")
    fails_at(with({ nats = { url = URL } }, { w = { remote = "nats:/other" } }),
      "neurons.w.remote", "expected nats://CORTEX/NEURON")
  end)
end)
