#!/usr/bin/env bash
# spec/e2e/http_storm.sh: 100 agents (spec/fixtures/http/storm.lua) each
# keep 10 HTTP requests in flight to the fake server
# (spec/fixtures/http/fake_server.py) until 10,000 are done: some slow,
# some failing with 500, some timing out; meanwhile a producer -> sink
# flow in the same runtime keeps running. Every request ends, as ok,
# failed or timed out, with a clear message (ok + failed + timed out ==
# 10,000), and the sink's count grows during the storm. Driven through the
# busted harness's module (neuronbus.testing) from luajit. Ends with "N
# passed, M failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
export NB_BUILD=${NB_BUILD:-$top/build/default}
work=$(mktemp -d)
cd "$top" || exit 1
. "$top/spec/e2e/lib.bash"
python3 spec/fixtures/http/fake_server.py >"$work/port" 2>"$work/err" &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null; rm -rf "$work"' EXIT
port=
for _ in $(seq 1 500); do
  port=$(sed -n 's/^PORT //p' "$work/port")
  [ -n "$port" ] && break
  sleep 0.01
done
[ -n "$port" ] || bail "the fake server started"

AGENTS=${NB_STORM_AGENTS:-100} PER=${NB_STORM_PER:-100} PORT=$port TOP=$top \
LUA_PATH="$top/lua/?.lua;$top/lua/?/init.lua;;" timeout 240 luajit - >"$work/out" 2>&1 <<'LUA'
local testing = require("neuronbus.testing")
local ffi = require("ffi")
ffi.cdef("int usleep(unsigned int usec);")
local agents, per, port = tonumber(os.getenv("AGENTS")), tonumber(os.getenv("PER")), os.getenv("PORT")
local fx = os.getenv("TOP") .. "/spec/fixtures/http/"
local lines = { "return { name = 'http_storm', tick = 'free', neurons = {",
  "  a_src = { script = '" .. fx .. "flow_src.lua', threshold = 0, refractory = 0 },",
  "  sink = { script = '" .. fx .. "flow_sink.lua', refractory = 0 }," }
for i = 1, agents do
  lines[#lines + 1] = ("  s%03d = { script = '%sstorm.lua', threshold = 0, refractory = 0, "
    .. "max_tasks = 16, config = { base = 'http://127.0.0.1:%s', n = %d, inflight = 10 } },")
    :format(i, fx, port, per)
end
lines[#lines + 1] = "}, synapses = { { from = 'a_src', to = 'sink' } } }"
local path = os.tmpname()
local f = assert(io.open(path, "w")); f:write(table.concat(lines, "\n")); f:close()
local h = testing.manifest(path, { quiet = true })
os.remove(path)
local total = agents * per
local t0 = os.time()
local samples, done = {}, 0
local sum
repeat
  h:tick(20)
  ffi.C.usleep(200)
  if #samples == 0 or os.time() > samples[#samples].t then
    sum = { ok = 0, failed = 0, timedout = 0 }
    for i = 1, agents do
      local s = h:state(("s%03d"):format(i))
      sum.ok, sum.failed, sum.timedout = sum.ok + s.ok, sum.failed + s.failed, sum.timedout + s.timedout
      if s.unclear then print("UNCLEAR " .. s.unclear) end
      if s.io_error and not sum.io_error then sum.io_error = s.io_error end
    end
    done = sum.ok + sum.failed + sum.timedout
    samples[#samples + 1] = { t = os.time(), done = done, got = h:state("sink").got }
  end
until done >= total or os.time() - t0 > 200
local errors = 0
for i = 1, agents do errors = errors + h:stats(("s%03d"):format(i)).errors end
local sink = h:state("sink")
print(("DONE %d OK %d FAILED %d TIMEDOUT %d TOTAL %d SECONDS %d ERRORS %d"):format(
  done, sum.ok, sum.failed, sum.timedout, total, os.time() - t0, errors))
if sum.io_error then print("IOERROR " .. sum.io_error) end
-- The flow grew during the storm: between every two samples taken while
-- requests were still running.
local grew = 0
for i = 2, #samples do
  if samples[i - 1].done < total and samples[i].got > samples[i - 1].got then grew = grew + 1 end
end
print(("FLOW samples %d grew %d got %d out_of_order %d"):format(#samples, grew, sink.got, sink.out_of_order))
h:close()
LUA
rc=$?
cat "$work/out" | grep -v '^UNCLEAR' | head -20
total=$((100 * 100))
[ -n "${NB_STORM_AGENTS:-}" ] && total=$((NB_STORM_AGENTS * ${NB_STORM_PER:-100}))
[ "$rc" -eq 0 ] || bail "the driver ran (exit $rc)"
ok "the driver ran"
line=$(grep '^DONE' "$work/out")
read -r _ done _ okn _ failn _ ton _ tot _ secs _ errs <<<"$line"
check "ok + failed + timed out == $total (ok ${okn:-?}, failed ${failn:-?}, timed out ${ton:-?}, in ${secs:-?} s)" \
  [ "${done:-0}" -eq "$total" ] && [ "${tot:-0}" -eq "$total" ]
check "every kind happened (ok, 500s, timeouts)" [ "${okn:-0}" -gt 0 ] && [ "${failn:-0}" -gt 0 ] && [ "${ton:-0}" -gt 0 ]
check "no agent error" [ "${errs:-1}" -eq 0 ]
check "every failure names its URL" [ "$(grep -c '^UNCLEAR' "$work/out")" -eq 0 ]
fl=$(grep '^FLOW' "$work/out")
read -r _ _ samples _ grew _ got _ ooo <<<"$fl"
check "the flow kept running during the storm (grew in $grew of $samples one-second samples, $got spikes)" \
  [ "${grew:-0}" -ge 1 ] && [ "${samples:-0}" -ge 2 ] && [ "$grew" -ge $((samples - 2)) ] && [ "${ooo:-1}" -eq 0 ]
finish
