-- The sandbox against an adversarial agent (spec/fixtures/isolation/
-- escape.lua): sandbox = true, jit = false, a budget and a 16 MB cap, as
-- in the report of the escape through the spike cdata, then again with
-- the JIT on and the cap only. Every technique
-- must be denied; after all of them the process is alive, the victim
-- still runs and answers, and a bystander pair (beat -> tally, 2,000
-- numbered spikes) lost nothing. The same agent unsandboxed does get the
-- cdata (the probes can tell), and the sandbox keeps the spike API.
local testing = require("neuronbus.testing")
local serial = require("neuronbus.serial")
local manifest = require("neuronbus.manifest")
local helpers = require("helpers")

local FX = manifest.absolute("spec/fixtures/isolation") .. "/"
local BEATS = 2000
local now_ms, sleep_ms = helpers.now_ms, helpers.sleep_ms

-- Returns a harness over the victim (the keys given) beside the bystanders.
local function run(victim)
  victim.script = FX .. "escape.lua"
  victim.refractory = 0
  victim.config = { to = "out" }
  local topo = {
    name = "escape", tick = "free",
    neurons = {
      victim = victim,
      beat = { script = FX .. "beat.lua", threshold = 0, refractory = 0,
               config = { to = "tally", n = BEATS, batch = 10 } },
      tally = { script = FX .. "count.lua", refractory = 0 },
      src = { script = manifest.absolute("spec/fixtures/runtime/handle.lua"), refractory = 0 },
    },
    synapses = { { from = "src", to = "victim", filters = { custom = "probe" } } },
  }
  local path = os.tmpname()
  helpers.write(path, serial.dump(topo))
  local ok, h = pcall(testing.manifest, path, { quiet = true, peers = { "out" } })
  os.remove(path)
  if not ok then error(h, 2) end
  return h
end

-- Sends the victim p and returns its report (the first payload into out
-- that starts with the technique's name), ticking up to 5 s.
local function report(h, p, name)
  name = name or p
  local seen = #h:received("out")
  h:inject("victim", p)
  local t0 = now_ms()
  while now_ms() - t0 < 5000 do
    h:tick(1)
    local got = h:received("out")
    for i = seen + 1, #got do
      local s = got[i].payload
      if s:sub(1, #name + 1) == name .. " " or s == name then return s end
    end
    sleep_ms(1)
  end
  error("no report for " .. p, 2)
end

-- Every technique (escape.lua's PROBES), each asserting denial.
local TECHNIQUES = {
  "spike_payload_bytes", "spike_ptr_arith", "spike_oob_huge",
  "spike_oob_negative", "spike_byte_oob", "spike_is_cdata",
  "spike_write_field", "spike_write_payload", "spike_rawset",
  "spike_rawget", "spike_metatable", "spike_setmetatable", "spike_view_ptr",
  "spike_method_forged", "spike_method_number", "spike_timestamp_write",
  "cdata_census", "copy_byte_oob", "keep_byte_oob", "keep_method_forged",
  "cclosure_upvalues", "tostring_recursion",
  "copy_is_cdata", "copy_write", "copy_ptr_arith", "copy_forge_arena",
  "copy_of_copy_view",
  "keep_is_cdata", "keep_fields", "keep_spike_ptr", "keep_use_after_release",
  "stale_spike", "stale_spike_payload", "stale_spike_task",
  "nb_metatable", "nb_index_loop", "nb_scan", "nb_setmetatable",
  "nb_http_internals", "nb_discover_cdata",
  "env_scan", "string_meta_rawget", "string_setmetatable", "load_globals",
  "load_mode_b", "load_env_nil", "coroutine_env",
  "require_agent", "require_sandbox", "require_proxy", "require_tasks",
  "gc_setpause", "gc_setstepmul", "unpack_huge", "string_rep_huge",
  "proxy_tostring_leak",
  "task_handle", "timer_handle", "task_hijack",
  "exec_outside", "exec_path", "files_outside", "files_dotdot", "http_cafile",
}

-- With the JIT off and a budget (the setting for code you do not trust),
-- and with the JIT on (the default) and only the cap.
local CONFIGS = {
  { "sandbox, jit = false, budget, 16 MB",
    { sandbox = true, jit = false, budget = "50ms", memory = "16MB" } },
  { "sandbox, JIT on, 16 MB", { sandbox = true, memory = "16MB" } },
}

for _, config in ipairs(CONFIGS) do
  describe("the sandbox against escape techniques (" .. config[1] .. ")", function()
    local h
    setup(function()
      local victim = {}
      for k, v in pairs(config[2]) do victim[k] = v end
      h = run(victim)
      assert.equal("hello", report(h, "hello")) -- SAVED: a spike kept past on_spike
      -- a task whose coroutine the agent keeps, waiting on a timer
      h:inject("victim", "task_hijack_setup")
      h:tick(3)
    end)
    teardown(function()
      -- alive, still answering, and the bystander lost nothing
      assert.equal("still here", report(h, "still here"))
      assert.equal("running", h:stats("victim").state)
      h:tick(BEATS / 10 + 50)
      assert.equal(BEATS, h:state("tally").got)
      assert.equal(0, h:state("tally").bad)
      assert.equal(0, h:stats("tally").errors)
      h:close()
    end)

    for _, p in ipairs(TECHNIQUES) do
      it("denies " .. p, function()
        local out = report(h, p)
        assert.matches("^" .. p .. " denied: ", out)
      end)
    end

    it("denies an error object whose metamethods run in the message handler", function()
      local errors = h:stats("victim").errors
      h:inject("victim", "error_object")
      h:tick(2)
      assert.equal(errors + 1, h:stats("victim").errors)
      assert.matches("^error_object_check denied: ", report(h, "error_object_check"))
    end)

    -- Error objects whose __tostring recurses through tostring (unbounded,
    -- a loop forever in the message handler) or raises: each is one agent
    -- error, and the agent answers right after.
    for _, p in ipairs({ "error_object_recursive", "error_object_raises" }) do
      it("fails " .. p .. " as an agent error, and goes on", function()
        local errors = h:stats("victim").errors
        h:inject("victim", p)
        h:tick(2)
        assert.equal(errors + 1, h:stats("victim").errors)
        local errs = h:errors("victim")
        assert.truthy(errs[#errs]:find("stack overflow", 1, true)
          or errs[#errs]:find("error in error handling", 1, true), errs[#errs])
        assert.equal("still here", report(h, "still here"))
      end)
    end

    it("hands a custom filter a proxy that dies when the filter returns", function()
      h:inject("src", "fire_to victim via_filter")
      h:tick(3)
      assert.equal("via_filter", h:received("out")[#h:received("out")].payload)
      assert.matches("^filter_check denied: returned false", report(h, "filter_check"))
    end)

    it("counts its techniques", function()
      -- the list, the three error objects and the filter's stored spike
      assert.is_true(#TECHNIQUES + 4 >= 30)
    end)

    it("keeps the spike API: payload, view (a string), byte, copy, keep", function()
      assert.equal("api ok", report(h, "api"))
      assert.equal("api_after ok", report(h, "api_after"))
      local big = "arena:" .. string.rep("x", 200)
      assert.equal("arena ok", report(h, big, "arena"))
      assert.equal("api_after ok", report(h, "api_after"))
    end)
  end)
end

describe("the same agent without the sandbox", function()
  it("gets the zero-copy cdata (the probes do see it)", function()
    local h = run({})
    for _, p in ipairs({ "spike_is_cdata", "spike_ptr_arith", "copy_is_cdata",
                         "keep_is_cdata", "nb_index_loop", "cclosure_upvalues" }) do
      assert.matches("^" .. p .. " escaped: ", report(h, p))
    end
    h:close()
  end)
end)

-- The wrapped task and stream of nb.http in the sandbox, against the fake
-- server of spec/runtime/http_spec.lua (spec/fixtures/http/client.lua).
describe("a sandboxed agent's nb.http streams and tasks", function()
  local fake = dofile("spec/fixtures/http/fake.lua")
  local srv, h
  setup(function() srv = fake.start() end)
  teardown(function() srv.stop() end)
  before_each(function()
    h = testing.agent("spec/fixtures/http/client.lua", { name = "client", quiet = true,
      sandbox = true })
  end)
  after_each(function() h:close() end)

  local function send(cmd)
    h:inject("client", (serial.dump(cmd):gsub("^return ", "")))
  end
  local function result(key)
    return fake.wait(h, function(hh) return hh:state("client").results[key] end, 10)
  end

  it("reads a stream and its events through the proxy, and closes one", function()
    send({ op = "stream", key = "s", opts = { url = srv.url("/stream?n=3&ms=5") } })
    send({ op = "events", key = "e", opts = { url = srv.url("/stream?n=3&ms=5") } })
    send({ op = "first", key = "f", n = 1, opts = { url = srv.url("/stream?n=50&ms=20") } })
    local r = assert(result("s"))
    assert.equal(200, r.status)
    assert.equal("text/event-stream", r.headers["content-type"])
    assert.equal("data: event 1\n\ndata: event 2\n\ndata: event 3\n\ndata: [DONE]\n\n",
      table.concat(r.items))
    assert.is_true(#assert(result("e")).items >= 3)
    assert.is_true(#assert(result("f")).items >= 1)
    assert.same({}, h:errors("client"))
  end)

  it("cancels a task through its proxy", function()
    send({ op = "hold", key = "w", opts = { url = srv.url("/stream?n=50&ms=100") } })
    h:tick(3)
    send({ op = "cancel", key = "w" })
    assert.equal("cancelled", assert(result("w")).cancelled)
    assert.same({}, h:errors("client"))
  end)
end)
