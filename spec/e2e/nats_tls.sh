#!/usr/bin/env bash
# NATS over TLS: the nats-server (its own, on a free loopback port) speaks
# TLS with a throwaway self-signed certificate (openssl). A runtime that
# trusts it (nats.tls.ca) connects and exchanges spikes with another; one
# without the CA is refused, exit 1, with a line naming the server; a
# manifest naming a CA file that does not exist is refused by check.
# Ends with "N passed, M failed".
source "$(dirname "$0")/nats_lib.bash"
N=20000
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1,DNS:localhost -days 1 \
  -keyout "$work/srv.key" -out "$work/srv.pem" >"$work/openssl.out" 2>&1 ||
  bail "openssl makes a certificate"
nats_start --tls --tlscert "$work/srv.pem" --tlskey "$work/srv.key"
url="tls://127.0.0.1:$nats_port"
tls="nats = { url = \"$url\", cluster = \"tls\", tls = { ca = \"$work/srv.pem\" } },"
gen_manifest "$work/b.lua" b "$tls" \
  "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
    config = { expect = $N, label = \"b\" } },"
gen_manifest "$work/a.lua" a "$tls" \
  "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
    config = { to = \"far\", count = $N, per_tick = 256, label = \"a\" } },
   far = { remote = \"nats://b/gen\" },"
start_nb b "$work/b.lua" --no-watch
start_nb a "$work/a.lua" --stats=json --no-watch
check "with the CA: b receives all $N spikes over TLS" wait_for "$work/b.out" "b: received all $N" 60
stop_nb a; stop_nb b
check "with the CA: in order, payloads intact" \
  test "$(summary b order_errors)" = 0 -a "$(summary b payload_errors)" = 0
gen_manifest "$work/w.lua" w "nats = { url = \"$url\" }," "gen = { script = \"$fx/gen.lua\" },"
"$nb" run "$work/w.lua" --no-watch >"$work/w.out" 2>"$work/w.err"; rc=$?
check "without the CA: exit 1 (got $rc)" test "$rc" -eq 1
check "without the CA: the error names the server" grep -q "NATS server $url: cannot connect" "$work/w.err"
gen_manifest "$work/m.lua" m "nats = { url = \"$url\", tls = { ca = \"$work/none.pem\" } }," \
  "gen = { script = \"$fx/gen.lua\" },"
"$nb" check "$work/m.lua" >"$work/m.out" 2>&1; rc=$?
check "a missing CA file: check exits 1 naming nats.tls.ca (got $rc)" \
  test "$rc" -eq 1 -a -n "$(grep -m1 'nats.tls.ca: cannot read' "$work/m.out")"
nats_stop
finish
