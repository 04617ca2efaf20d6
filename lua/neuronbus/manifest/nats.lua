-- neuronbus.manifest.nats: the manifest's nats section (runtimes joined
-- through a NATS server or cluster, docs/nats.md), checked with the
-- manifest's own checker so each problem names its key.
--
--   nats = { url = "nats://127.0.0.1:4222",   -- or "tls://...", a list "a,b"
--            cluster = "prod",                -- subjects nb.<cluster>.*
--            user = "app", password = CRED,   -- or token = CRED,
--            nkey = { public = "U...", seed = "app.nk" },  -- or
--            creds = "app.creds",
--            tls = { ca = "ca.pem", cert = "me.pem", key = "me.key" },
--            window = 16384, window_bytes = "16MB", batch = "64KB",
--            resend = "500ms", announce = "1s", connect_timeout = "2s" }
--   neurons = { w = { remote = "nats://CORTEX/NEURON" } }
--
-- CRED is a string, { env = "NAME" } or { file = "path" } (as a link
-- SECRET, any length). Files resolve against the manifest's folder and
-- must be readable. At most one of user, token, nkey, creds.
--
-- Normalized: topo.transport.nats = { url, cluster, user, password, token,
--   nkey_public, nkey_seed, creds, tls_ca, tls_cert, tls_key, window,
--   window_bytes, batch_bytes, resend_ms, announce_ms, connect_ms }.

local check = require("neuronbus.manifest.check")
local links = require("neuronbus.manifest.links")
local units = require("neuronbus.units")

local type, ipairs = type, ipairs
local str_match, str_gmatch = string.match, string.gmatch
local join, K = check.join, check.K

local _M = {}

_M.KEYS = { "url", "cluster", "user", "password", "token", "nkey", "creds",
            "tls", "window", "window_bytes", "batch", "resend", "announce",
            "connect_timeout" }

-- Returns the url list v checked (each nats://HOST:PORT or tls://...), or
-- nil after reporting.
local function check_url(c, path, v)
  if type(v) ~= "string" or v == "" then
    return c:wrong(path, 'a NATS url like "nats://127.0.0.1:4222"', v)
  end
  for u in str_gmatch(v, "[^,]+") do
    if not str_match(u, "^%s*nats://[^%s/]+%s*$") and
       not str_match(u, "^%s*tls://[^%s/]+%s*$") then
      return c:fail(path, "%s is not a NATS server url: expected "
        .. "nats://HOST:PORT or tls://HOST:PORT (several separated by commas)",
        units.show(u))
    end
  end
  return v
end

-- Returns the absolute path of readable file v, or nil after reporting.
local function check_file(c, path, v)
  if type(v) ~= "string" or v == "" then return c:wrong(path, "a file path", v) end
  local file = check.absolute(v, c.basedir)
  local ok, err = check.readable_file(file)
  if not ok then return c:fail(path, "cannot read %s: %s", file, err) end
  return file
end

-- Checks the nats section v; returns its normalized table or nil after
-- reporting.
function _M.check(c, v)
  local t = c:table("nats", v)
  if not t then return nil end
  c:keys("nats", t, _M.KEYS)
  local out = {}
  if t.url == nil then
    c:fail("nats.url", 'missing: the server, for instance "nats://127.0.0.1:4222"')
  else
    out.url = check_url(c, "nats.url", t.url)
  end
  if t.cluster ~= nil then
    if not links.link_name_ok(t.cluster) then
      c:fail("nats.cluster", "expected a name (1..255 bytes, no control "
        .. "characters or /), got %s", units.show(t.cluster))
    else
      out.cluster = t.cluster
    end
  end
  local auths = {}
  for _, k in ipairs({ "user", "token", "nkey", "creds" }) do
    if t[k] ~= nil then auths[#auths + 1] = k end
  end
  if #auths > 1 then
    c:fail("nats." .. auths[2], "give one way to authenticate: %s and %s "
      .. "are both set", auths[1], auths[2])
  end
  if t.user ~= nil then
    if type(t.user) ~= "string" or t.user == "" then
      c:wrong("nats.user", "a user name", t.user)
    else
      out.user = t.user
    end
    if t.password == nil then
      c:fail("nats.password", "missing: user needs a password")
    end
  end
  if t.password ~= nil then
    if t.user == nil then c:fail("nats.password", "a password needs user") end
    out.password = links.check_secret(c, "nats.password", t.password, 1)
  end
  if t.token ~= nil then out.token = links.check_secret(c, "nats.token", t.token, 1) end
  if t.nkey ~= nil then
    local nk = c:table("nats.nkey", t.nkey)
    if nk then
      c:keys("nats.nkey", nk, { "public", "seed" })
      if type(nk.public) ~= "string" or not str_match(nk.public, "^U[A-Z2-7]+$") then
        c:wrong("nats.nkey.public", 'a user public key ("U..." as nk -gen user prints)',
          nk.public)
      else
        out.nkey_public = nk.public
      end
      out.nkey_seed = check_file(c, "nats.nkey.seed", nk.seed)
    end
  end
  if t.creds ~= nil then out.creds = check_file(c, "nats.creds", t.creds) end
  if t.tls ~= nil then
    local tl = c:table("nats.tls", t.tls)
    if tl then
      c:keys("nats.tls", tl, { "ca", "cert", "key" })
      if tl.ca ~= nil then out.tls_ca = check_file(c, "nats.tls.ca", tl.ca) end
      if tl.cert ~= nil then out.tls_cert = check_file(c, "nats.tls.cert", tl.cert) end
      if tl.key ~= nil then out.tls_key = check_file(c, "nats.tls.key", tl.key) end
      if (tl.cert == nil) ~= (tl.key == nil) then
        c:fail(tl.cert == nil and "nats.tls.cert" or "nats.tls.key",
          "a client certificate needs both cert and key")
      end
      if tl.ca == nil and tl.cert == nil then
        c:fail("nats.tls", "expected ca and/or cert with key")
      end
    end
  end
  out.window = c:integer("nats.window", t.window, K.LINK_QUEUE_DEFAULT, 1,
    K.LINK_QUEUE_MAX)
  out.window_bytes = links.check_bytes(c, "nats.window_bytes", t.window_bytes,
    K.LINK_QUEUE_BYTES_DEFAULT, 1, check.MAX_U32)
  out.batch_bytes = links.check_bytes(c, "nats.batch", t.batch, 65536, 1024,
    8 * 1024 * 1024)
  out.resend_ms = links.check_ms(c, "nats.resend", t.resend, 500)
  out.announce_ms = links.check_ms(c, "nats.announce", t.announce, 1000)
  out.connect_ms = links.check_ms(c, "nats.connect_timeout", t.connect_timeout, 2000)
  return out
end

-- Returns the normalized remote for "nats://CORTEX/NEURON" v (at path rp),
-- or nil after reporting.
function _M.remote(c, rp, v)
  local cortex, neuron = str_match(v, "^nats://([^/]*)/(.*)$")
  if not cortex then
    return c:fail(rp, "expected nats://CORTEX/NEURON, got %s", units.show(v))
  end
  if not links.link_name_ok(cortex) then
    return c:fail(rp, "bad cortex name %s in %s (1..255 bytes, no control "
      .. "characters or /)", units.show(cortex), units.show(v))
  end
  if not links.link_name_ok(neuron) then
    return c:fail(rp, "bad neuron name %s in %s (1..255 bytes, no control "
      .. "characters or /)", units.show(neuron), units.show(v))
  end
  return { nats = true, cortex = cortex, neuron = neuron }
end

return _M
