#!/usr/bin/env bash
# bench/plot.sh: renders bench/results.json to bench/ratios.svg with gnuplot:
# top, each row's ratio to its in-run baseline (bars) with its target
# (points); bottom, when bench/history/ has runs, each ratio over the runs.
# `make bench-plot` runs it (and installs gnuplot-nox when missing).
# Usage: bench/plot.sh [OUTPUT.svg|OUTPUT.png]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
res=bench/results.json
svg=${1:-bench/ratios.svg} # a .png name renders PNG instead (pngcairo)
if [ ! -f "$res" ]; then
  echo "bench-plot: no $res yet (run make bench first)" >&2
  exit 1
fi
command -v gnuplot >/dev/null 2>&1 || { echo "bench-plot: gnuplot missing (apt-get install gnuplot-nox)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Prints "name ratio target" for each row of a results file that has a
# ratio (the rows are flat JSON, one per line).
rows() {
  awk '
  function jget(s, k,   re, v) {
    re = "\"" k "\":(\"[^\"]*\"|[^,}]*)"
    if (!match(s, re)) return ""
    v = substr(s, RSTART + length(k) + 3, RLENGTH - length(k) - 3)
    gsub(/^"|"$/, "", v)
    return v
  }
  /"name"/ && /"ratio"/ {
    t = jget($0, "target"); sub(/^[<>]=/, "", t); if (t == "") t = "NaN"
    print jget($0, "name"), jget($0, "ratio"), t
  }' "$1"
}

rows "$res" >"$tmp/now.dat"
if [ ! -s "$tmp/now.dat" ]; then
  echo "bench-plot: $res has no row with a ratio" >&2
  exit 1
fi
names=$(cut -d' ' -f1 "$tmp/now.dat" | tr '\n' ' ')

# History: one line "run_index timestamp name ratio" per row per run.
i=0
: >"$tmp/hist.dat"
: >"$tmp/labels"
for f in $(ls bench/history/*.json 2>/dev/null | sort); do
  ts=$(basename "$f" .json)
  rows "$f" | while read -r n r _; do echo "$i $ts $n $r"; done >>"$tmp/hist.dat"
  i=$((i + 1))
done
runs=$i

{
  h=$([ "$runs" -gt 1 ] && echo 1100 || echo 600)
  case $svg in
    *.png) echo "set terminal pngcairo size 1200,$h enhanced font 'sans,10' background rgb 'white'" ;;
    *) echo "set terminal svg size 1200,$h dynamic enhanced font 'sans,11' background rgb 'white'" ;;
  esac
  echo "set output '$svg'"
  echo "set datafile missing 'NaN'"
  [ "$runs" -gt 1 ] && echo "set multiplot layout 2,1"
  echo "set title 'NeuronBus: each row against its in-run baseline ($(grep -m1 '"timestamp"' "$res" | cut -d'"' -f4))'"
  echo "set ylabel 'ratio (row / baseline)'"
  echo "set style fill solid 0.6 border -1"
  echo "set boxwidth 0.6"
  echo "set xtics rotate by -35 left noenhanced"
  echo "set grid ytics"
  echo "set logscale y 2"
  echo "set key top left"
  echo "set bmargin 9"
  echo "set rmargin 10"
  echo "set yrange [0.1:*]"
  echo "plot '$tmp/now.dat' using 0:2:xtic(1) with boxes lc rgb '#4a7fb5' title 'ratio (higher is better, except ping-pong: lower)', \\"
  echo "     '' using 0:3 with points pt 7 ps 1.4 lc rgb '#d62728' title 'target', \\"
  echo "     1 with lines dt 2 lc rgb 'black' title 'baseline'"
  if [ "$runs" -gt 1 ]; then
    echo "set title 'ratio over the runs in bench/history/'"
    echo "set xlabel 'run (oldest first)'"
    echo "set xtics norotate 1"
    echo "set bmargin 4"
    echo "set autoscale y"
    echo "set key outside right noenhanced"
    echo "names = '$names'"
    echo "plot for [n in names] '$tmp/hist.dat' using 1:(strcol(3) eq n ? \$4 : NaN) with linespoints title n"
    echo "unset multiplot"
  fi
} >"$tmp/plot.gp"
gnuplot "$tmp/plot.gp"
echo "bench-plot: wrote $svg ($(wc -l <"$tmp/now.dat") rows, $runs runs of history)"
