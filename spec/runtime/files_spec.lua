-- nb.files through the harness and the real runtime: a write and read
-- round trip (atomic: no temporary file left), a missing file, and the
-- sandbox's directories, which neither .. nor a symlink leads out of.
local testing = require("neuronbus.testing")
local manifest = require("neuronbus.manifest")
local helpers = require("helpers")

local RUNNER = manifest.absolute("spec/fixtures/exec/runner.lua")
local now_ms, sleep_ms = helpers.now_ms, helpers.sleep_ms

-- Runs jobs in the runner (with neuron keys opts); returns nb.state once
-- all are over, and the harness.
local function run(jobs, opts)
  opts = opts or {}
  opts.name, opts.refractory, opts.quiet = "runner", 0, true
  opts.config = { jobs = jobs }
  local h = testing.agent(RUNNER, opts)
  h:inject("runner", "run")
  local t0 = now_ms()
  while true do
    h:tick(1)
    local s = h:state("runner")
    if s.done == #jobs then return s, h end
    assert(now_ms() - t0 < 10000, "the jobs did not end")
    sleep_ms(2)
  end
end

-- Returns the names in directory dir, sorted.
local function ls(dir)
  local out = helpers.sh("ls -A " .. dir)
  local t = {}
  for n in out:gmatch("[^\n]+") do t[#t + 1] = n end
  table.sort(t)
  return t
end

describe("nb.files", function()
  local tmp
  before_each(function()
    tmp = os.tmpname(); os.remove(tmp)
    assert(os.execute("mkdir -p " .. tmp .. "/data/sub " .. tmp .. "/outside") == 0)
    tmp = helpers.sh("cd " .. tmp .. " && pwd -P"):gsub("\n$", "")
    helpers.write(tmp .. "/secret", "secret")
    helpers.write(tmp .. "/data/in.txt", "inside")
    assert(os.execute("ln -s " .. tmp .. "/secret " .. tmp .. "/data/link") == 0)
    assert(os.execute("ln -s " .. tmp .. "/outside " .. tmp .. "/data/linkdir") == 0)
  end)
  after_each(function() os.execute("rm -rf " .. tmp) end)

  it("writes a whole file atomically and reads it back", function()
    local big = helpers.bytes(3 * 1024 * 1024 + 17)
    local s, h = run({
      { write = tmp .. "/a.txt", data = "hello", read = tmp .. "/a.txt" },
      { write = tmp .. "/data/in.txt", data = "replaced", read = tmp .. "/data/in.txt" },
      { write = tmp .. "/big.bin", data = big },
      { write = tmp .. "/empty", data = "", read = tmp .. "/empty" },
    })
    assert.same({ wrote = true, data = "hello" }, s.results[1])
    assert.same({ wrote = true, data = "replaced" }, s.results[2])
    assert.is_true(s.results[3].wrote)
    assert.equal(big, helpers.read(tmp .. "/big.bin"))
    assert.same({ wrote = true, data = "" }, s.results[4])
    assert.same({ "a.txt", "big.bin", "data", "empty", "outside", "secret" }, ls(tmp))
    h:close()
  end)

  it("reports a missing file, a missing directory and a directory", function()
    local s, h = run({
      { read = tmp .. "/nope" },
      { write = tmp .. "/no/dir/x", data = "x" },
      { read = tmp .. "/data" },
      { write = tmp .. "/data/", data = "x" },
    })
    assert.equal("nb.files.read: " .. tmp .. "/nope: no such file or directory", s.results[1].read_err)
    assert.matches("nb.files.write: " .. tmp .. "/no/dir/x: no such file or directory", s.results[2].write_err, 1, true)
    assert.equal("nb.files.read: " .. tmp .. "/data: is a directory", s.results[3].read_err)
    assert.equal("nb.files.write: " .. tmp .. "/data/: not a file name", s.results[4].write_err)
    h:close()
  end)

  it("keeps a sandboxed agent under its files directories", function()
    local d = tmp .. "/data"
    local s, h = run({
      { read = d .. "/in.txt" },                                   -- 1 inside
      { write = d .. "/sub/new.txt", data = "ok", read = d .. "/sub/new.txt" },
      { read = tmp .. "/secret" },                                 -- 3 outside
      { read = d .. "/../secret" },                                -- 4 via ..
      { read = d .. "/link" },                                     -- 5 via a symlink
      { write = d .. "/linkdir/x", data = "x" },                   -- 6 via a symlinked dir
      { write = d .. "/../escape", data = "x" },                   -- 7 via ..
      { read = tmp .. "/missing" },                                -- 8 outside, missing
      { read = d .. "/missing" },                                  -- 9 inside, missing
    }, { sandbox = true, files = { d } })
    assert.equal("inside", s.results[1].data)
    assert.same({ wrote = true, data = "ok" }, s.results[2])
    local key = "not under neurons.runner.files: \"" .. d .. "\")"
    assert.equal("nb.files.read: " .. tmp .. "/secret is outside the sandbox's directories (it resolves to "
      .. tmp .. "/secret, " .. key, s.results[3].read_err)
    assert.matches("nb.files.read: " .. d .. "/../secret is outside the sandbox's directories", s.results[4].read_err, 1, true)
    assert.matches("nb.files.read: " .. d .. "/link is outside the sandbox's directories (it resolves to "
      .. tmp .. "/secret", s.results[5].read_err, 1, true)
    assert.matches("nb.files.write: " .. d .. "/linkdir/x is outside", s.results[6].write_err, 1, true)
    assert.matches("nb.files.write: " .. d .. "/../escape is outside", s.results[7].write_err, 1, true)
    assert.matches("nb.files.read: " .. tmp .. "/missing is outside", s.results[8].read_err, 1, true)
    assert.equal("nb.files.read: " .. d .. "/missing: no such file or directory", s.results[9].read_err)
    assert.equal("secret", helpers.read(tmp .. "/secret"))
    assert.same({}, ls(tmp .. "/outside"))
    assert.is_nil(io.open(tmp .. "/escape"))
    h:close()
  end)

  it("replaces a symlink inside the directories, never its target", function()
    local d = tmp .. "/data"
    local s, h = run({ { write = d .. "/link", data = "new", read = d .. "/link" } },
      { sandbox = true, files = { d } })
    assert.same({ wrote = true, data = "new" }, s.results[1])
    assert.equal("secret", helpers.read(tmp .. "/secret"))
    h:close()
  end)
end)

describe("the archiver of docs/exec.md", function()
  it("compresses and saves each payload in a sandbox that allows gzip and its directory", function()
    local tmp = os.tmpname(); os.remove(tmp)
    assert(os.execute("mkdir -p " .. tmp) == 0)
    local h = testing.agent(manifest.absolute("spec/fixtures/docs/archiver.lua"), {
      name = "archiver", refractory = 0, config = { dir = tmp },
      sandbox = true, exec = { "gzip" }, files = { tmp } })
    h:inject("archiver", "hello, archive")
    h:inject("archiver", string.rep("abc", 10000))
    local t0 = now_ms()
    repeat h:tick(1); sleep_ms(2) until h:state("archiver").saved == 2 or now_ms() - t0 > 5000
    assert.equal(2, h:state("archiver").saved)
    assert.equal("hello, archive", helpers.sh("gzip -dc " .. tmp .. "/1.gz"))
    assert.equal(string.rep("abc", 10000), helpers.sh("gzip -dc " .. tmp .. "/2.gz"))
    h:close()
    os.execute("rm -rf " .. tmp)
  end)
end)
