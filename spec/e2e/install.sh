#!/usr/bin/env bash
# spec/e2e/install.sh: `make install PREFIX=...` into a temporary prefix
# (and DESTDIR staging), then a user's own folder outside the repository,
# with an agent, a manifest and specs, driven only by PREFIX/bin/neuronbus:
# `neuronbus test` passes a passing spec (the installed modules and
# libnbruntime.so, nothing from the tree), fails a failing one, names a
# missing PATH or busted; `neuronbus check` and `run` take the folder's
# manifest. Ends with "N passed, M failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$top" || exit 1
. "$top/spec/e2e/lib.bash"
prefix=$work/prefix
nb=$prefix/bin/neuronbus
# Nothing may point back into the tree: the installed files must do.
unset NB_BUILD NB_LUA_PATH LUA_PATH LUA_CPATH
has() { grep -q -- "$2" "$work/$1"; }

# --- make install PREFIX, and DESTDIR staging
make -s install BUILD="${build#"$top"/}" PREFIX="$prefix" >"$work/out" 2>"$work/err"; rc=$?
check "make install PREFIX=$prefix exits 0" test "$rc" -eq 0
[ -x "$nb" ] || { not_ok "no $nb: nothing else to try"; finish; exit; }

missing=""
for f in bin/neuronbus lib/libneuronbus.a lib/libneuronbus.so lib/libnbruntime.so \
    include/neuronbus/neuronbus.h include/neuronbus/nb_frame.h \
    share/lua/5.1/neuronbus/layout.lua share/lua/5.1/neuronbus/testing.lua; do
  [ -f "$prefix/$f" ] || missing="$missing $f"
done
# Every module of the tree, at any depth.
while read -r f; do
  [ -f "$prefix/share/lua/5.1/$f" ] || missing="$missing share/lua/5.1/$f"
done < <(cd lua && find neuronbus -name '*.lua')
echo "missing:$missing" >"$work/out"
check "the command, both libraries, the runtime library, the headers and every Lua module are installed" \
  test -z "$missing"
check "no internal header is installed" \
  test -z "$(ls "$prefix/include/neuronbus" | grep -E '^nb__|_internal\.h$')"

make -s install BUILD="${build#"$top"/}" DESTDIR="$work/stage" PREFIX=/opt/nb >"$work/out" 2>"$work/err"; rc=$?
(cd "$prefix" && find . -type f | sort) >"$work/want"
(cd "$work/stage/opt/nb" 2>/dev/null && find . -type f | sort) >"$work/got"
check "DESTDIR stages the same files under DESTDIR/PREFIX" \
  test "$rc" -eq 0 -a -s "$work/got" -a -z "$(diff "$work/want" "$work/got")"

# A C program built against the installed headers and library.
cat >"$work/hello.c" <<'EOF'
#include <neuronbus/neuronbus.h>
#include <stdio.h>
int main(void) {
  nb_spike_t s;
  uint8_t f[NB_FRAME_SPIKE];
  nb_spike_init(&s, 1, NB_EXCITATORY, 0);
  nb_spike_set_payload(&s, "hi", 2);
  printf("%s %d\n", NB_VERSION_STRING, nb_frame_encode(&s, f));
  return 0;
}
EOF
cc -std=c11 -I"$prefix/include" -o "$work/hello" "$work/hello.c" "$prefix/lib/libneuronbus.a" \
  -pthread -lm >"$work/out" 2>"$work/err" && "$work/hello" >"$work/out" 2>"$work/err"
check "a C program builds against include/neuronbus and lib/libneuronbus.a" \
  test "$(cat "$work/out")" = "0.1.0 68"

# --- a user's folder outside the repository
app=$work/app
mkdir -p "$app/spec" "$app/failing"
cat >"$app/echo.lua" <<'EOF'
-- echo: answers each spike with "re:" .. payload to config.reply_to, and
-- says how many it answered when it stops.
local agent = {}

function agent.init(nb, config)
  nb.state.reply_to = config.reply_to
  nb.state.n = 0
end

function agent.on_spike(spike, nb)
  nb.state.n = nb.state.n + 1
  nb:fire_to(nb.state.reply_to, "re:" .. spike:payload())
end

function agent.on_stop(nb)
  io.stdout:write("echo: answered ", nb.state.n, "\n")
  io.stdout:flush()
end

return agent
EOF
cat >"$app/beat.lua" <<'EOF'
-- beat: with threshold 0 it fires each tick, "beat N" to config.to.
local agent = {}

function agent.init(nb, config)
  nb.state.to = config.to
  nb.state.n = 0
end

function agent.on_spike(spike, nb) end

function agent.tick(nb)
  nb.state.n = nb.state.n + 1
  nb:fire_to(nb.state.to, "beat " .. nb.state.n)
end

return agent
EOF
cat >"$app/app.lua" <<'EOF'
return {
  name = "app",
  tick = "5ms",
  neurons = {
    beat = { script = "beat.lua", threshold = 0, refractory = 0, config = { to = "echo" } },
    echo = { script = "echo.lua", refractory = 0, config = { reply_to = "beat" } },
  },
  synapses = { { from = "beat", to = "echo", weight = 1.0 } },
}
EOF
cat >"$app/spec/echo_spec.lua" <<'EOF'
local testing = require("neuronbus.testing")
local prefix = assert(os.getenv("EXPECT_PREFIX"))

describe("echo.lua", function()
  it("answers each spike to config.reply_to", function()
    local h = testing.agent("echo.lua", {
      name = "echo", refractory = 0, config = { reply_to = "sink" }, peers = { "sink" },
    })
    h:inject("echo", "hi", { from = "sink" })
    h:inject("echo", "there", { from = "sink" })
    h:tick(3)
    local got = {}
    for i, r in ipairs(h:received("sink")) do got[i] = r.payload end
    assert.same({ "re:hi", "re:there" }, got)
    assert.equal(2, h:state("echo").n)
    h:close()
  end)

  it("runs on the installed modules and runtime library", function()
    local here = package.searchpath("neuronbus.testing", package.path)
    assert.equal(prefix .. "/share/lua/5.1/neuronbus/testing.lua", here)
    local maps = io.open("/proc/self/maps"):read("*a")
    local lib = maps:match("(/%S*libnbruntime%.so)")
    assert.equal(prefix .. "/lib/libnbruntime.so", lib)
  end)
end)
EOF
cat >"$app/failing/wrong_spec.lua" <<'EOF'
local testing = require("neuronbus.testing")

describe("echo.lua, expected wrong", function()
  it("answers with the wrong prefix", function()
    local h = testing.agent("echo.lua", {
      name = "echo", refractory = 0, config = { reply_to = "sink" }, peers = { "sink" },
    })
    h:inject("echo", "hi", { from = "sink" })
    h:tick(3)
    assert.equal("echo:hi", h:received("sink")[1].payload)
  end)
end)
EOF

cd "$app" || exit 1
# run_nb ARGS...: runs the installed command in the user's folder; sets $rc.
run_nb() { EXPECT_PREFIX=$prefix timeout 120 "$nb" "$@" >"$work/out" 2>"$work/err"; rc=$?; }

run_nb --help
check "--help lists neuronbus test" has out "neuronbus test \[PATH...\]"

run_nb test
check "neuronbus test (default ./spec) passes on the installed modules and library" \
  test "$rc" -eq 0 -a -n "$(grep -E '^2 successes / 0 failures / 0 errors' "$work/out")"

run_nb test spec/echo_spec.lua -- -o TAP
check "neuronbus test FILE -- -o TAP passes busted's options through" \
  test "$rc" -eq 0 -a -n "$(grep -E '^ok 2 ' "$work/out")"

run_nb test failing
check "a failing spec makes neuronbus test exit non-zero" \
  test "$rc" -ne 0 -a -n "$(grep -E '0 successes / 1 failure' "$work/out")"

run_nb test nowhere
check "a missing PATH exits 1 naming it" test "$rc" -eq 1 -a -n "$(grep 'nowhere: No such file' "$work/err")"

mkdir -p "$work/emptybin"
PATH=$work/emptybin "$nb" test >"$work/out" 2>"$work/err"; rc=$?
check "without busted on PATH it exits 1 saying so" test "$rc" -eq 1 -a -n "$(grep 'busted is not on PATH' "$work/err")"

# Busted run by hand with the installed modules on LUA_PATH: testing.lua
# finds PREFIX/lib/libnbruntime.so by itself.
EXPECT_PREFIX=$prefix LUA_PATH="$prefix/share/lua/5.1/?.lua;$prefix/share/lua/5.1/?/init.lua;;" timeout 120 \
  busted --lua=luajit spec >"$work/out" 2>"$work/err"; rc=$?
check "busted with the installed modules on LUA_PATH finds the installed runtime library" \
  test "$rc" -eq 0 -a -n "$(grep -E '^2 successes / 0 failures' "$work/out")"

run_nb check app.lua
check "neuronbus check on the folder's manifest exits 0" test "$rc" -eq 0

run_nb run app.lua --ticks 20
check "neuronbus run on the folder's manifest runs its agents and stops cleanly" \
  test "$rc" -eq 0 -a -n "$(grep -E '^echo: answered [0-9]+' "$work/out")"
finish
