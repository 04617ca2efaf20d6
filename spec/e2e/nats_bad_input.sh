#!/usr/bin/env bash
# Bad input on the cluster's subjects: while a streams N spikes to b
# through their own nats-server, a foreign client (spec/fixtures/nats/
# foreign_pub.py: the NATS text protocol over a socket) publishes 17
# malformed NeuronBus messages on b's inbox and the cards subject, some
# claiming to come from a. b counts every one as malformed (JSON nats
# section), logs a line naming the subject, drops them, and its stream from
# a arrives whole and in order. Then wrong credentials: a runtime whose
# password the server refuses exits 1 with a line naming the server.
# Ends with "N passed, M failed".
source "$(dirname "$0")/nats_lib.bash"
N=${NB_NATS_BAD_SPIKES:-200000}
nats_start
url=$(nats_url)
gen_manifest "$work/b.lua" b "nats = { url = \"$url\", cluster = \"bad\" }," \
  "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
    config = { expect = $N, progress = 20000, label = \"b\" } },"
gen_manifest "$work/a.lua" a "nats = { url = \"$url\", cluster = \"bad\" }," \
  "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
    config = { to = \"far\", count = $N, per_tick = 256, label = \"a\" } },
   far = { remote = \"nats://b/gen\" },"
start_nb b "$work/b.lua" --stats=json --no-watch
start_nb a "$work/a.lua" --stats=json --no-watch
wait_for "$work/b.out" "progress received=20000" 60 || bail "b receives a's stream"
python3 spec/fixtures/nats/foreign_pub.py "$nats_port" bad b a >"$work/pub.out" 2>"$work/pub.err"
check "the foreign client published its 17 messages" grep -q "published 17" "$work/pub.out"
check "b gets a's whole stream meanwhile" wait_for "$work/b.out" "b: received all $N" 90
check "both processes are alive" bash -c "kill -0 ${nb_pid[a]} && kill -0 ${nb_pid[b]}"
stop_nb a; stop_nb b; rc_b=$rc
check "b ends cleanly (exit $rc_b)" test "$rc_b" -eq 0
mal=$(stat b nats.malformed)
check "b counted the 17 malformed messages ($mal)" test "$mal" = 17
check "b logged the drop, naming the subject" grep -q "malformed message on nb.bad.rt.b dropped" "$work/b.err"
check "b's stream from a: in order, every payload intact, nothing rejected" \
  test "$(summary b received)" = "$N" -a "$(summary b order_errors)" = 0 -a "$(summary b payload_errors)" = 0 -a "$(stat b link.rejected)" = 0

# Wrong credentials: the server requires a user; a runtime with a wrong
# password is refused and says by which server.
nats_stop
nats_start --user nb --pass right-password
gen_manifest "$work/w.lua" w "nats = { url = \"$url\", user = \"nb\", password = \"wrong-password\" }," \
  "gen = { script = \"$fx/gen.lua\" },"
"$nb" run "$work/w.lua" --no-watch >"$work/w.out" 2>"$work/w.err"; rc=$?
check "wrong password: exit 1 (got $rc)" test "$rc" -eq 1
check "wrong password: the error names the server and the refusal" \
  grep -q "NATS server $url: cannot connect: .*[Aa]uthoriz" "$work/w.err"
gen_manifest "$work/r.lua" r "nats = { url = \"$url\", user = \"nb\", password = { env = \"NB_TEST_NATS_PW\" } }," \
  "gen = { script = \"$fx/gen.lua\" },"
NB_TEST_NATS_PW=right-password timeout 3 "$nb" run "$work/r.lua" --no-watch >"$work/r.out" 2>"$work/r.err"; rc=$?
check "the right password (from the environment) connects (ran until stopped: $rc)" \
  test "$rc" -eq 124 -a -n "$(grep -m1 "connected to $url" "$work/r.err")"
nats_stop
finish
