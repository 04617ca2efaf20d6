# spec/e2e/lib.bash: the tally every end-to-end script shares (sourced, not
# run: spec/run.sh runs only *.sh). A script checks with ok/not_ok/check
# and ends with finish, which prints "N passed, M failed". A failure shows
# the tail of "$work/out" and "$work/err" (the script sets $work), of the
# files given to not_ok, or whatever the script's own show_output prints.
passed=0 failed=0

# Counts one passing check named $1; returns 0.
ok() { echo "ok - $1"; passed=$((passed + 1)); }

# Shows the last 30 lines of "$work/out" and "$work/err"; a script whose
# output lives elsewhere defines its own show_output after sourcing this.
show_output() {
  local f
  for f in "${work:-/nonexistent}/out" "${work:-/nonexistent}/err"; do
    [ -s "$f" ] && sed 's/^/    | /' "$f" | tail -n 30
  done
  return 0
}

# not_ok NAME [FILE...]: counts one failing check named NAME and shows the
# last 30 lines of each FILE, or show_output's when none is given.
not_ok() {
  local name=$1 f
  shift
  echo "not ok - $name"; failed=$((failed + 1))
  if [ $# -eq 0 ]; then show_output; return 0; fi
  for f in "$@"; do
    [ -s "$f" ] && sed 's/^/    | /' "$f" | tail -n 30
  done
  return 0
}

# check NAME COMMAND...: runs the command and tallies it under NAME.
check() { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }

# Prints the closing line; returns 0 only when nothing failed.
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }

# bail NAME: one failure, then the closing line, and the script ends (for a
# step the later checks cannot run without).
bail() { not_ok "$1"; finish; exit 1; }

# need PROGRAM: ends the script with one failure when PROGRAM is not built.
need() { [ -x "$1" ] || bail "$1 is not built"; }
