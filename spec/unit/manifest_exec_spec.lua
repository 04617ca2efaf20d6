-- The sandbox's exec and files keys (neuronbus.manifest.isolation):
-- validated with their key paths, and normalized (files absolute against
-- the manifest's directory, without a trailing slash).
local manifest = require("neuronbus.manifest")

local FX = manifest.absolute("spec/fixtures/isolation") .. "/"

describe("the exec and files keys", function()
  -- Returns the normalized neuron, or nil and the problems, for keys t.
  local function validate(t, basedir)
    t.script = FX .. "bomb.lua"
    local topo, errs = manifest.validate({ name = "m", neurons = { n = t } }, basedir)
    if topo then return topo.neurons[1] end
    return nil, errs
  end
  local function problem(t)
    local _, e = validate(t)
    assert.is_table(e, "accepted")
    return e[1]
  end

  it("normalizes both lists", function()
    local n = validate({ sandbox = true, exec = { "git", "/usr/bin/jq" },
                         files = { "data/", "/tmp//x/../y/", "/" } }, "/srv/app")
    assert.same({ "git", "/usr/bin/jq" }, n.exec)
    assert.same({ "/srv/app/data", "/tmp/y", "/" }, n.files)
    n = validate({ sandbox = true, exec = "jq", files = "." }, "/srv/app")
    assert.same({ "jq" }, n.exec)
    assert.same({ "/srv/app" }, n.files)
    n = validate({ sandbox = true })
    assert.is_nil(n.exec)
    assert.is_nil(n.files)
    assert.is_nil(validate({}).exec)
  end)

  it("reports each problem with its key path", function()
    assert.equal("neurons.n.exec: only used with sandbox = true (an agent outside the sandbox may run any command)",
      problem({ exec = { "git" } }))
    assert.equal("neurons.n.files: only used with sandbox = true (an agent outside the sandbox may use any file)",
      problem({ sandbox = false, files = { "data" } }))
    assert.matches("^neurons%.n%.exec: expected a list of commands", problem({ sandbox = true, exec = 5 }))
    assert.matches("^neurons%.n%.exec: expected a list of commands", problem({ sandbox = true, exec = { x = "git" } }))
    assert.matches("^neurons%.n%.exec%[2%]: expected a command", problem({ sandbox = true, exec = { "git", 3 } }))
    assert.matches("^neurons%.n%.exec%[1%]: expected a command", problem({ sandbox = true, exec = { "" } }))
    assert.equal('neurons.n.exec[1]: "bin/tool": a command name (no slash) or an absolute path expected',
      problem({ sandbox = true, exec = { "bin/tool" } }))
    assert.matches("^neurons%.n%.files: expected a list of directories", problem({ sandbox = true, files = true }))
    assert.matches("^neurons%.n%.files%[1%]: expected a directory", problem({ sandbox = true, files = { "a\nb" } }))
    assert.matches('^neurons%.n%.exce: unknown key, did you mean "exec"%?', problem({ sandbox = true, exce = {} }))
  end)
end)
