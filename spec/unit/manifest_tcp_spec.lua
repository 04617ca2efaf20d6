-- Specs for the manifest's TCP keys (neuronbus.manifest.links): listen,
-- peers, accept, max_payload and remote neurons, each problem reported
-- with its key path, and good manifests normalizing.
local manifest = require("neuronbus.manifest")

local FIXTURES = "spec/fixtures/manifests"

local with, fails_at, ok = require("helpers").manifest_cases(FIXTURES, assert)

-- Returns the neuron called name in topo.
local function neuron(topo, name)
  for _, n in ipairs(topo.neurons) do
    if n.name == name then return n end
  end
end

-- link_limits when the manifest gives none (runtime/nb_rt_defaults.h).
local DEFAULT_LIMITS = {
  handshake_timeout_ms = 5000, max_pending = 64, pending_per_addr = 16,
  max_links = 256, links_per_addr = 64, proxies_per_peer = 64,
  frame_timeout_ms = 30000, rx_buffer = 64 * 1024 * 1024, keepalive_ms = 10000,
  idle_timeout_ms = 30000,
}

describe("manifest TCP keys", function()
  it("has no transport without listen, peers or remote neurons", function()
    assert.is_nil(ok(with()).transport)
  end)

  it("normalizes listen, peers (string and table), accept and max_payload", function()
    local topo = ok(with({
      listen = "tcp://127.0.0.1:0",
      peers = { "tcp://127.0.0.1:7402",
                { url = "tcp://[::1]:7403", policy = "drop", queue = 100,
                  queue_bytes = "1MB", backoff = { "10ms", "2s" } } },
      accept = { policy = "drop", queue = 50 },
      max_payload = "64KB",
    }))
    assert.same({
      listen = "tcp://127.0.0.1:0",
      max_payload = 65536,
      accept = { policy = "drop", queue = 50, queue_bytes = 16 * 1024 * 1024 },
      peers = {
        { url = "tcp://127.0.0.1:7402", policy = "resend", queue = 16384,
          queue_bytes = 16 * 1024 * 1024, backoff_min_ms = 50,
          backoff_max_ms = 5000 },
        { url = "tcp://[::1]:7403", policy = "drop", queue = 100,
          queue_bytes = 1024 * 1024, backoff_min_ms = 10, backoff_max_ms = 2000 },
      },
      limits = DEFAULT_LIMITS,
    }, topo.transport)
  end)

  it("fills link_limits: given keys in ms and bytes, the rest defaults", function()
    local topo = ok(with({ listen = "tcp://127.0.0.1:0", link_limits = {
      handshake_timeout = "2s", max_links = 8, rx_buffer = "1MB",
      keepalive = "100ms", idle_timeout = "1s" } }))
    local want = {}
    for k, v in pairs(DEFAULT_LIMITS) do want[k] = v end
    want.handshake_timeout_ms, want.max_links, want.rx_buffer = 2000, 8, 1048576
    want.keepalive_ms, want.idle_timeout_ms = 100, 1000
    assert.same(want, topo.transport.limits)
  end)

  it("makes remote neurons proxies without a script, and dials their peer", function()
    local topo = ok(with({}, {
      parser = { remote = "tcp://127.0.0.1:7402/parser", capabilities = "parse" },
      ui = { remote = "peer://frontend/ui" },
    }))
    local p = neuron(topo, "parser")
    assert.same({ url = "tcp://127.0.0.1:7402", neuron = "parser" }, p.remote)
    assert.is_nil(p.script)
    assert.same({ "parse" }, p.capabilities)
    assert.same({ cortex = "frontend", neuron = "ui" }, neuron(topo, "ui").remote)
    assert.equal(1, #topo.transport.peers)
    assert.equal("tcp://127.0.0.1:7402", topo.transport.peers[1].url)
    assert.equal("resend", topo.transport.peers[1].policy)
  end)

  it("keeps a remote's listed peer with its options (no second link)", function()
    local topo = ok(with({ peers = { { url = "tcp://127.0.0.1:7402", policy = "drop" } } },
      { parser = { remote = "tcp://127.0.0.1:7402/parser" } }))
    assert.equal(1, #topo.transport.peers)
    assert.equal("drop", topo.transport.peers[1].policy)
  end)

  it("allows synapses into remote neurons", function()
    local topo = ok(with({ synapses = { { from = "a", to = "parser", weight = 0.5 } } },
      { parser = { remote = "tcp://127.0.0.1:7402/parser" } }))
    assert.equal("parser", topo.synapses[1].to)
  end)

  describe("names each problem", function()
    it("a host name instead of an address", function()
      fails_at(with({ listen = "tcp://localhost:7401" }), "listen", "numeric IPv4")
    end)
    it("a scheme other than tcp", function()
      fails_at(with({ listen = "udp://127.0.0.1:1" }), "listen", "tcp://HOST:PORT")
    end)
    it("a port out of range", function()
      fails_at(with({ listen = "tcp://127.0.0.1:70000" }), "listen", "out of range")
    end)
    it("an octet out of range", function()
      fails_at(with({ peers = { "tcp://127.0.0.300:1" } }), "peers[1].url", "bad host")
    end)
    it("a neuron on listen", function()
      fails_at(with({ listen = "tcp://127.0.0.1:1/x" }), "listen", "names a neuron")
    end)
    it("port 0 on a peer", function()
      fails_at(with({ peers = { "tcp://127.0.0.1:0" } }), "peers[1].url", "port 0")
    end)
    it("a peer listed twice", function()
      fails_at(with({ peers = { "tcp://127.0.0.1:5", { url = "tcp://127.0.0.1:5" } } }),
        "peers[2]", "listed twice")
    end)
    it("a peer that is the listen address", function()
      fails_at(with({ listen = "tcp://127.0.0.1:5", peers = { "tcp://127.0.0.1:5" } }),
        "peers[1]", "dial itself")
    end)
    it("an unknown policy, with a hint", function()
      fails_at(with({ peers = { { url = "tcp://127.0.0.1:5", policy = "resnd" } } }),
        "peers[1].policy", 'did you mean "resend"?')
    end)
    it("an unknown peer key", function()
      fails_at(with({ peers = { { url = "tcp://127.0.0.1:5", qeue = 5 } } }),
        "peers[1].qeue", 'did you mean "queue"?')
    end)
    it("a link_limits count that is not a positive integer", function()
      fails_at(with({ listen = "tcp://127.0.0.1:0", link_limits = { max_pending = 0 } }),
        "link_limits.max_pending", "out of range")
      fails_at(with({ listen = "tcp://127.0.0.1:0", link_limits = { proxies_per_peer = 2.5 } }),
        "link_limits.proxies_per_peer", "integer")
    end)
    it("a link_limits duration without a unit", function()
      fails_at(with({ listen = "tcp://127.0.0.1:0", link_limits = { idle_timeout = 30 } }),
        "link_limits.idle_timeout", "unit")
    end)
    it("a link_limits size that is not a size", function()
      fails_at(with({ listen = "tcp://127.0.0.1:0", link_limits = { rx_buffer = "lots" } }),
        "link_limits.rx_buffer")
    end)
    it("an unknown link_limits key, with a hint", function()
      fails_at(with({ listen = "tcp://127.0.0.1:0", link_limits = { idle_timout = "1s" } }),
        "link_limits.idle_timout", 'did you mean "idle_timeout"?')
    end)
    it("a keepalive not shorter than the idle timeout", function()
      fails_at(with({ listen = "tcp://127.0.0.1:0", link_limits = { keepalive = "40s" } }),
        "link_limits.keepalive", "shorter than the idle timeout")
    end)
    it("link_limits that is not a table", function()
      fails_at(with({ listen = "tcp://127.0.0.1:0", link_limits = 5 }), "link_limits")
    end)
    it("pending_per_addr above max_pending", function()
      fails_at(with({ listen = "tcp://127.0.0.1:0",
        link_limits = { max_pending = 4, pending_per_addr = 8 } }),
        "link_limits.pending_per_addr", "exceeds max_pending")
    end)
    it("a queue bound out of range", function()
      fails_at(with({ accept = { queue = 0 } }), "accept.queue", "out of range")
    end)
    it("a bad queue_bytes", function()
      fails_at(with({ accept = { queue_bytes = "lots" } }), "accept.queue_bytes")
    end)
    it("a backoff that is not a pair", function()
      fails_at(with({ peers = { { url = "tcp://127.0.0.1:5", backoff = "1s" } } }),
        "peers[1].backoff", "pair of durations")
    end)
    it("a backoff whose first delay exceeds the longest", function()
      fails_at(with({ peers = { { url = "tcp://127.0.0.1:5", backoff = { "5s", "1s" } } } }),
        "peers[1].backoff", "exceeds")
    end)
    it("max_payload out of range", function()
      fails_at(with({ max_payload = "2GB" }), "max_payload", "out of range")
    end)
    it("a remote url without a neuron", function()
      fails_at(with({}, { p = { remote = "tcp://127.0.0.1:5" } }), "neurons.p.remote",
        "names no neuron")
    end)
    it("a remote with a script", function()
      fails_at(with({}, { p = { remote = "tcp://127.0.0.1:5/p", script = "agents/echo.lua" } }),
        "neurons.p.script", "takes no script")
    end)
    it("a remote with integrate-and-fire parameters", function()
      fails_at(with({}, { p = { remote = "peer://x/p", threshold = 2 } }),
        "neurons.p.threshold", "remote neuron")
    end)
    it("a malformed peer:// remote", function()
      fails_at(with({}, { p = { remote = "peer://x" } }), "neurons.p.remote",
        "peer://CORTEX/NEURON")
    end)
    it("a remote that is not a string", function()
      fails_at(with({}, { p = { remote = 7 } }), "neurons.p.remote", "tcp://HOST:PORT/NEURON")
    end)
    it("a remote at this process's own address", function()
      fails_at(with({ listen = "tcp://127.0.0.1:5" }, { p = { remote = "tcp://127.0.0.1:5/p" } }),
        "neurons.p.remote", "own listen address")
    end)
    it("a synapse out of a remote neuron", function()
      fails_at(with({ synapses = { { from = "p", to = "a" } } },
        { p = { remote = "peer://x/p" } }), "synapses[1].from", "remote neuron")
    end)
  end)

  describe("secrets", function()
    local S = "0123456789abcdef0123"
    it("takes a cluster secret, per-peer secrets, encrypt and an allow list", function()
      local path = os.tmpname()
      local f = assert(io.open(path, "wb"))
      f:write("file-secret-0123456789\n")
      f:close()
      local tr = ok(with({ listen = "tcp://0.0.0.0:7401", secret = S, encrypt = true,
        peers = { { url = "tcp://127.0.0.1:7402", secret = { file = path }, encrypt = true } },
        accept = { allow = { zeta = S, alpha = { file = path } } } })).transport
      os.remove(path)
      assert.equal(S, tr.secret)
      assert.is_true(tr.encrypt)
      assert.equal("file-secret-0123456789", tr.peers[1].secret) -- newline dropped
      assert.is_true(tr.peers[1].encrypt)
      assert.same({ { cortex = "alpha", secret = "file-secret-0123456789" },
                    { cortex = "zeta", secret = S } }, tr.allow)
    end)
    it("refuses listening beyond loopback without a secret, and says why", function()
      fails_at(with({ listen = "tcp://0.0.0.0:7401" }), "listen",
        "is reachable beyond this host, but the links have no secret")
      fails_at(with({ listen = "tcp://[::]:7401" }), "listen", "no secret")
      ok(with({ listen = "tcp://127.0.0.2:7401" }))
      ok(with({ listen = "tcp://[::1]:7401" }))
      ok(with({ listen = "tcp://0.0.0.0:7401", accept = { allow = { a = S } } }))
    end)
    it("a secret that is too short, without showing it", function()
      local topo, errs = manifest.validate(with({ secret = "hunter2" }), FIXTURES)
      assert.is_nil(topo)
      assert.matches("secret: the secret holds 7 bytes; a secret needs at least 16", errs[1], 1, true)
      assert.is_nil(errs[1]:find("hunter2", 1, true))
    end)
    it("a missing environment variable or file", function()
      fails_at(with({ secret = { env = "NB_SPEC_NO_SUCH_VAR" } }), "secret.env", "is not set")
      fails_at(with({ secret = { file = "/nonexistent/nb.key" } }), "secret.file",
        "cannot read the secret file /nonexistent/nb.key")
      fails_at(with({ secret = { env = "A", file = "b" } }), "secret", "exactly one of")
      fails_at(with({ secret = 12 }), "secret", "a secret")
    end)
    it("encrypt without a secret", function()
      fails_at(with({ encrypt = true, listen = "tcp://127.0.0.1:0" }), "encrypt", "needs a secret")
      fails_at(with({ peers = { { url = "tcp://127.0.0.1:7402", encrypt = true } } }),
        "peers[1].encrypt", "needs a secret")
    end)
    it("a bad allow list", function()
      fails_at(with({ accept = { allow = { "x" } } }), "accept.allow", "cortex names to their secrets")
      fails_at(with({ accept = { allow = { ["a/b"] = S } } }), "accept.allow.a/b", "bad cortex name")
    end)
  end)
end)
