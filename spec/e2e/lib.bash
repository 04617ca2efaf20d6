# spec/e2e/lib.bash: the tally every end-to-end script shares (sourced, not
# run: spec/run.sh runs only *.sh). The script sets $work before calling
# not_ok, whose report shows the tail of "$work/out" and "$work/err"; it
# ends with finish, which prints "N passed, M failed".
passed=0 failed=0

# Counts one passing check named $1; returns 0.
ok() { echo "ok - $1"; passed=$((passed + 1)); }

# Counts one failing check named $1 and shows what the command printed.
not_ok() {
  echo "not ok - $1"; failed=$((failed + 1))
  local f
  for f in "$work/out" "$work/err"; do
    [ -s "$f" ] && sed 's/^/    | /' "$f" | tail -n 30
  done
  return 0
}

# check NAME COMMAND...: runs the command and tallies it under NAME.
check() { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }

# Prints the closing line; returns 0 only when nothing failed.
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }
