-- nb.http (lua/neuronbus/http.lua, runtime/nb_rt_http.c) against the fake
-- server spec/fixtures/http/fake_server.py, through the agent
-- spec/fixtures/http/client.lua: requests, failures with clear messages,
-- streams and server-sent events, cancelling by task:cancel(), by a
-- restart and by the runtime's stop.
local testing = require("neuronbus.testing")
local cjson = require("cjson")
local fake = dofile("spec/fixtures/http/fake.lua")

local srv

-- Returns a harness running the client agent (opts: extra neuron keys).
local function client(opts)
  local o = { name = "client", quiet = true }
  for k, v in pairs(opts or {}) do o[k] = v end
  return testing.agent("spec/fixtures/http/client.lua", o)
end

-- Sends one command (a table turned into a literal) to the client.
local function send(h, cmd)
  h:inject("client", (require("neuronbus.serial").dump(cmd):gsub("^return ", "")))
end

-- Waits until results[key] is there; returns it.
local function result(h, key, secs)
  return fake.wait(h, function(hh) return hh:state("client").results[key] end, secs or 10)
end

setup(function() srv = fake.start() end)
teardown(function() srv.stop() end)

describe("nb.http.request", function()
  local h
  before_each(function() h = client() end)
  after_each(function() h:close() end)

  it("GETs: status, body and headers with lowercase names", function()
    send(h, { op = "request", key = "a", opts = { url = srv.url("/echo?x=1") } })
    local r = assert(result(h, "a"))
    assert.equal(200, r.status)
    assert.equal("application/json", r.headers["content-type"])
    assert.equal("yes", r.headers["x-fake"])
    local echo = cjson.decode(r.body)
    assert.equal("GET", echo.method)
    assert.equal("/echo?x=1", echo.path)
    assert.same({}, h:errors("client"))
  end)

  it("sends method, headers (a map or a list) and body", function()
    send(h, { op = "request", key = "map", opts = { url = srv.url("/echo"),
      method = "put", headers = { ["X-One"] = "1", ["Content-Type"] = "text/plain" },
      body = "hello body" } })
    send(h, { op = "request", key = "list", opts = { url = srv.url("/echo"),
      headers = { "X-Two: 2", "X-Three: three" }, body = "{}" } })
    local a = cjson.decode(assert(result(h, "map")).body)
    assert.equal("PUT", a.method)
    assert.equal("1", a.headers["x-one"])
    assert.equal("text/plain", a.headers["content-type"])
    assert.equal("hello body", a.body)
    local rb = assert(result(h, "list"))
    assert.is_nil(rb.err, rb.err)
    local b = cjson.decode(rb.body)
    assert.equal("POST", b.method) -- a body without a method is a POST
    assert.equal("2", b.headers["x-two"])
    assert.equal("three", b.headers["x-three"])
  end)

  it("returns an HTTP error status as a status, not a failure", function()
    send(h, { op = "request", key = "s", opts = { url = srv.url("/status/500") } })
    local r = assert(result(h, "s"))
    assert.equal(500, r.status)
    assert.equal("status 500", r.body)
  end)

  it("refuses a bad URL with a message naming it", function()
    send(h, { op = "request", key = "u", opts = { url = "ftp://example.com/x" } })
    send(h, { op = "request", key = "sp", opts = { url = "http://exa mple.com/" } })
    send(h, { op = "request", key = "m", opts = { url = "http://[::1/" } })
    local r = assert(result(h, "u"))
    assert.equal("invalid", r.kind)
    assert.matches('bad URL "ftp://example.com/x": it must start with http:// or https://', r.err, 1, true)
    assert.equal("invalid", assert(result(h, "sp")).kind)
    r = assert(result(h, "m"))
    assert.equal("invalid", r.kind)
    assert.matches("GET http://[::1/: ", r.err, 1, true)
  end)

  it("validates its arguments with clear messages", function()
    send(h, { op = "request", key = "k", opts = { url = srv.url("/"), tiemout = 1 } })
    send(h, { op = "request", key = "hn", opts = { url = srv.url("/"), headers = { ["Bad Name"] = "x" } } })
    send(h, { op = "request", key = "hv", opts = { url = srv.url("/"), headers = { X = "a\r\nInjected: 1" } } })
    send(h, { op = "request", key = "t", opts = { url = srv.url("/"), timeout = "soon" } })
    send(h, { op = "request", key = "b", opts = { url = srv.url("/"), body = 12 } })
    assert.matches("unknown key tiemout", assert(result(h, "k")).err, 1, true)
    assert.matches('bad header name "Bad Name"', assert(result(h, "hn")).err, 1, true)
    assert.matches("header X: the value must be a string without CR, LF or NUL", assert(result(h, "hv")).err, 1, true)
    assert.matches("nb.http.request: timeout: ", assert(result(h, "t")).err, 1, true)
    assert.matches("body must be a string, got a number", assert(result(h, "b")).err, 1, true)
  end)

  it("reports a refused connection naming the URL", function()
    send(h, { op = "request", key = "c", opts = { url = "http://127.0.0.1:1/nothing" } })
    local r = assert(result(h, "c"))
    assert.equal("io", r.kind)
    assert.matches("nb.http.request: GET http://127.0.0.1:1/nothing: ", r.err, 1, true)
    assert.matches("onnect", r.err)
  end)

  it("times out with a message naming the URL", function()
    send(h, { op = "request", key = "t", opts = { url = srv.url("/slow?ms=3000"), timeout = "150ms" } })
    local r = assert(result(h, "t"))
    assert.equal("timeout", r.kind)
    assert.matches("GET " .. srv.url("/slow?ms=3000") .. ": ", r.err, 1, true)
    assert.matches("timed out", r.err)
  end)

  it("speaks HTTPS (a TLS handshake with a plain server fails clearly)", function()
    send(h, { op = "request", key = "s", opts = { url = "https://127.0.0.1:" .. srv.port .. "/echo", timeout = 5 } })
    local r = assert(result(h, "s"))
    assert.equal("io", r.kind)
    assert.matches("GET https://127.0.0.1:" .. srv.port .. "/echo: ", r.err, 1, true)
    assert.matches("SSL", r.err)
  end)

  it("takes a big body, and refuses one over 64 MiB", function()
    send(h, { op = "request", key = "big", opts = { url = srv.url("/big?bytes=" .. 8 * 1024 * 1024) } })
    assert.equal(8 * 1024 * 1024, assert(result(h, "big", 30)).body_len)
    send(h, { op = "request", key = "huge", opts = { url = srv.url("/big?bytes=" .. (64 * 1024 * 1024 + 1)) } })
    local r = assert(result(h, "huge", 30))
    assert.equal("too_big", r.kind)
    assert.matches("over 64 MiB", r.err, 1, true)
  end)

  it("runs many requests at once on the one loop", function()
    for i = 1, 200 do
      send(h, { op = "request", key = "r" .. i, opts = { url = srv.url("/slow?ms=50") } })
    end
    local all = fake.wait(h, function(hh)
      local res = hh:state("client").results
      for i = 1, 200 do if not res["r" .. i] then return false end end
      return res
    end, 30)
    assert.truthy(all)
    for i = 1, 200 do assert.equal(200, all["r" .. i].status) end
  end)

  it("raises outside a task", function()
    send(h, { op = "outside", key = "o" })
    local r = assert(result(h, "o"))
    assert.is_false(r.ok)
    assert.matches("nb.http.request: only inside a task", r.err, 1, true)
  end)
end)

describe("nb.http.stream", function()
  local h
  before_each(function() h = client() end)
  after_each(function() h:close() end)

  it("hands the chunks on as they arrive", function()
    send(h, { op = "stream", key = "s", opts = { url = srv.url("/stream?n=5&ms=20") } })
    local r = assert(result(h, "s"))
    assert.equal(200, r.status)
    assert.equal("text/event-stream", r.headers["content-type"])
    assert.is_true(#r.items >= 2) -- 20 ms apart: not one piece
    assert.equal("data: event 1\n\ndata: event 2\n\ndata: event 3\n\ndata: event 4\n\n"
      .. "data: event 5\n\ndata: [DONE]\n\n", table.concat(r.items))
    assert.is_nil(r.err)
  end)

  it("keeps what arrives while the reading task waits on something else", function()
    send(h, { op = "slow", key = "w", ms = 30, opts = { url = srv.url("/stream?n=6&ms=2") } })
    local r = assert(result(h, "w"))
    assert.same({ "event 1", "event 2", "event 3", "event 4", "event 5", "event 6", "[DONE]" }, r.items)
    assert.is_nil(r.err)
  end)

  it("pauses a stream its task does not read: memory bounded, every byte kept", function()
    local lines = 1000 * 1000 -- 8 MB, no two chunks alike (strings are interned)
    local base = h:memory("client")
    send(h, { op = "lazy", key = "z", ms = 1500, opts = { url = srv.url("/lines?n=" .. lines) } })
    assert.is_nil(h:run_until_idle("1s")) -- the task still sleeps, unread
    local held = h:memory("client") - base
    assert(h:run_until_idle("30s"))
    local r = assert(h:state("client").results.z)
    assert.is_nil(r.err)
    assert.equal(8 * lines, r.bytes)
    -- 1 MiB unread at most (and the strings it came in): not 8 MB.
    assert.is_true(held < 3 * 1024 * 1024, "held " .. held .. " bytes unread")
  end)

  it("parses server-sent events", function()
    send(h, { op = "events", key = "e", opts = { url = srv.url("/stream?n=4&ms=5") } })
    local r = assert(result(h, "e"))
    assert.same({ "event 1", "event 2", "event 3", "event 4", "[DONE]" }, r.items)
  end)

  it("stops the transfer on close", function()
    send(h, { op = "first", key = "f", n = 2, opts = { url = srv.url("/stream?n=50&ms=50") } })
    local r = assert(result(h, "f"))
    assert.same({ "event 1", "event 2" }, r.items)
    h:tick(50)
    assert.same({}, h:errors("client"))
  end)

  it("fails clearly: refused, timed out in the middle", function()
    send(h, { op = "stream", key = "c", opts = { url = "http://127.0.0.1:1/" } })
    assert.equal("io", assert(result(h, "c")).kind)
    send(h, { op = "stream", key = "t", opts = { url = srv.url("/stream?n=20&ms=50"), timeout = "300ms" } })
    local r = assert(result(h, "t"))
    assert.equal(200, r.status)
    assert.is_true(#r.items >= 1)
    assert.matches("nb.http.stream: GET " .. srv.url("/stream?n=20&ms=50") .. ": ", r.err, 1, true)
    assert.matches("timed out", r.err)
  end)
end)

describe("HTTPS", function()
  -- Throwaway self-signed certificates made now with the openssl CLI (a
  -- missing openssl fails these tests, it does not skip them): "ok" for
  -- 127.0.0.1 and localhost, "other" for another name only.
  local dir, tls, other, cert, other_cert
  local h

  setup(function()
    dir = fake.tempdir()
    local key, other_key
    cert, key = fake.cert(dir, "ok", "IP:127.0.0.1,DNS:localhost")
    other_cert, other_key = fake.cert(dir, "other", "DNS:other.example")
    tls = fake.start{ cert = cert, key = key }
    other = fake.start{ cert = other_cert, key = other_key }
  end)
  teardown(function()
    if tls then tls.stop() end
    if other then other.stop() end
    if dir then fake.rmdir(dir) end
  end)
  before_each(function() h = client() end)
  after_each(function() h:close() end)

  it("GETs over a verified connection with cafile", function()
    assert.matches("^https://127%.0%.0%.1:", tls.url("/"))
    send(h, { op = "request", key = "a", opts = { url = tls.url("/echo?x=1"), cafile = cert } })
    send(h, { op = "request", key = "l", opts = { cafile = cert,
      url = "https://localhost:" .. tls.port .. "/status/201" } })
    local r = assert(result(h, "a"))
    assert.is_nil(r.err, r.err)
    assert.equal(200, r.status)
    assert.equal("yes", r.headers["x-fake"])
    assert.equal("/echo?x=1", cjson.decode(r.body).path)
    r = assert(result(h, "l")) -- the name in the certificate verifies too
    assert.is_nil(r.err, r.err)
    assert.equal(201, r.status)
    assert.equal("status 201", r.body)
    assert.same({}, h:errors("client"))
  end)

  it("refuses a certificate the system's CAs do not vouch for", function()
    send(h, { op = "request", key = "n", opts = { url = tls.url("/echo") } })
    local r = assert(result(h, "n"))
    assert.equal("io", r.kind)
    assert.matches("nb.http.request: GET " .. tls.url("/echo") .. ": ", r.err, 1, true)
    assert.matches("SSL certificate problem: self%-signed certificate", r.err)
    assert.matches("trust its CA with cafile", r.err, 1, true)
  end)

  it("refuses a trusted certificate made for another host name", function()
    send(h, { op = "request", key = "w", opts = { url = other.url("/echo"), cafile = other_cert } })
    local r = assert(result(h, "w"))
    assert.equal("io", r.kind)
    assert.is_nil(r.status)
    assert.matches("GET " .. other.url("/echo") .. ": ", r.err, 1, true)
    assert.matches("no alternative certificate subject name matches target host name '127.0.0.1'", r.err, 1, true)
    -- and the CA of one server does not vouch for the other
    send(h, { op = "request", key = "x", opts = { url = tls.url("/echo"), cafile = other_cert } })
    r = assert(result(h, "x"))
    assert.equal("io", r.kind)
    assert.matches("SSL certificate problem", r.err, 1, true)
  end)

  it("streams over https", function()
    send(h, { op = "stream", key = "s", opts = { url = tls.url("/stream?n=3&ms=20"), cafile = cert } })
    send(h, { op = "events", key = "e", opts = { url = tls.url("/stream?n=2&ms=5"), cafile = cert } })
    send(h, { op = "stream", key = "f", opts = { url = tls.url("/stream?n=2&ms=5") } })
    local r = assert(result(h, "s"))
    assert.is_nil(r.err, r.err)
    assert.equal(200, r.status)
    assert.equal("text/event-stream", r.headers["content-type"])
    assert.equal("data: event 1\n\ndata: event 2\n\ndata: event 3\n\ndata: [DONE]\n\n",
      table.concat(r.items))
    assert.same({ "event 1", "event 2", "[DONE]" }, assert(result(h, "e")).items)
    r = assert(result(h, "f")) -- unverified: fails before any header
    assert.equal("io", r.kind)
    assert.matches("nb.http.stream: GET " .. tls.url("/stream?n=2&ms=5") .. ": SSL certificate problem", r.err, 1, true)
  end)

  it("insecure = true verifies nothing", function()
    send(h, { op = "request", key = "i", opts = { url = other.url("/status/200"), insecure = true } })
    local r = assert(result(h, "i"))
    assert.is_nil(r.err, r.err)
    assert.equal(200, r.status)
  end)

  it("validates cafile and insecure with clear messages", function()
    local missing = dir .. "/missing.pem"
    local junk = dir .. "/junk.pem"
    local f = assert(io.open(junk, "w"))
    f:write("not a certificate\n")
    f:close()
    send(h, { op = "request", key = "m", opts = { url = tls.url("/"), cafile = missing } })
    send(h, { op = "stream", key = "ms", opts = { url = tls.url("/"), cafile = missing } })
    send(h, { op = "request", key = "d", opts = { url = tls.url("/"), cafile = dir } })
    send(h, { op = "request", key = "t", opts = { url = tls.url("/"), cafile = 1 } })
    send(h, { op = "request", key = "i", opts = { url = tls.url("/"), insecure = "yes" } })
    send(h, { op = "request", key = "b", opts = { url = tls.url("/"), insecure = true, cafile = cert } })
    send(h, { op = "request", key = "j", opts = { url = tls.url("/"), cafile = junk } })
    local r = assert(result(h, "m"))
    assert.equal("invalid", r.kind)
    assert.equal("nb.http.request: cafile: cannot read the PEM file " .. missing
      .. ": No such file or directory", r.err)
    assert.equal("nb.http.stream: cafile: cannot read the PEM file " .. missing
      .. ": No such file or directory", assert(result(h, "ms")).err)
    assert.matches("cafile: cannot read the PEM file " .. dir .. ": Is a directory",
      assert(result(h, "d")).err, 1, true)
    assert.matches("cafile must be the path of a PEM file of CA certificates, got a number",
      assert(result(h, "t")).err, 1, true)
    assert.matches("insecure must be a boolean, got a string", assert(result(h, "i")).err, 1, true)
    assert.matches("cafile and insecure = true exclude each other", assert(result(h, "b")).err, 1, true)
    r = assert(result(h, "j")) -- readable but no certificate: curl names it
    assert.equal("io", r.kind)
    assert.matches("GET " .. tls.url("/") .. ": ", r.err, 1, true)
    assert.matches(junk, r.err, 1, true)
  end)

  it("has no cafile in the sandbox", function()
    local sb = client({ sandbox = true })
    send(sb, { op = "request", key = "c", opts = { url = tls.url("/"), cafile = cert } })
    local r = assert(result(sb, "c"))
    assert.equal("invalid", r.kind)
    assert.matches("nb.http.request: cafile is not available in the sandbox", r.err, 1, true)
    sb:close()
  end)
end)

describe("cancelling", function()
  it("task:cancel() stops a request", function()
    local h = client()
    send(h, { op = "hold", key = "x", opts = { url = srv.url("/slow?ms=5000") } })
    h:tick(20)
    send(h, { op = "cancel", key = "x" })
    local r = assert(result(h, "x"))
    assert.equal("cancelled", r.cancelled)
    h:tick(20)
    assert.is_nil(h:state("client").results.x.returned)
    assert.same({}, h:errors("client"))
    h:close()
  end)

  it("a restart of the agent cancels its requests and streams", function()
    local h = client({ on_error = "policy", restart = { backoff = "1ms" } })
    send(h, { op = "hold", key = "x", opts = { url = srv.url("/slow?ms=5000") } })
    send(h, { op = "stream", key = "s", opts = { url = srv.url("/stream?n=100&ms=20") } })
    h:tick(30)
    send(h, { op = "crash", key = "c" })
    fake.wait(h, function(hh) return hh:stats("client").restarts >= 1 end, 5)
    assert.equal(1, h:stats("client").restarts)
    -- A fresh state: nothing of the old one resumes in it.
    send(h, { op = "request", key = "after", opts = { url = srv.url("/echo") } })
    assert.equal(200, assert(result(h, "after")).status)
    assert.is_nil(h:state("client").results.s)
    h:close()
  end)

  it("the runtime's stop cancels what is in flight", function()
    local h = client()
    for i = 1, 20 do
      send(h, { op = "hold", key = "x" .. i, opts = { url = srv.url("/slow?ms=5000") } })
      send(h, { op = "events", key = "e" .. i, opts = { url = srv.url("/stream?n=100&ms=20") } })
    end
    h:tick(50)
    h:stop()
    h:close()
  end)
end)

describe("docs/http.md's fetcher", function()
  it("replies with the status and size, or the error", function()
    local h = testing.agent("spec/fixtures/http/fetcher.lua", { name = "fetcher",
      threshold = 0, refractory = 0, peers = { "asker" } })
    h:inject("fetcher", srv.url("/big?bytes=1234"), { from = "asker" })
    h:inject("fetcher", "http://127.0.0.1:1/", { from = "asker" })
    local p = fake.wait(h, function(hh)
      local r = hh:received("asker")
      return #r >= 2 and r
    end, 10)
    local got = { p[1].payload, p[2].payload }
    table.sort(got)
    assert.equal("200 1234", got[1])
    assert.matches("^error nb%.http%.request: GET http://127%.0%.0%.1:1/: ", got[2])
    h:close()
  end)
end)
