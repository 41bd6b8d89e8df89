#!/usr/bin/env bash
# p99 latency under a steady (paced) load while a 1M-row table is reloaded every 2 s, vs the
# same load without reloads. Reloads swap two versions of the plan that differ in every target
# (hard link + rename over the plan: no copy, the file watcher sees an atomic replace).
#
# Many short phases, interleaved (quiet, reloading, quiet, ...): this machine's neighbours
# change its latency from minute to minute by more than a reload does, so long phases compare
# different machines. Each pair is a DURATION-second run without reloads and one during which
# the plan is swapped at once and every 2 s after. Prints the median p99 of each phase over
# all pairs, their ratio, and the median and quartiles of the per-pair ratios.
#
#   cargo build --release && benches/redirects/reload_p99.sh
#   env: ROWS (1000000) RUNS pairs (20) DURATION s per phase (6) CONNS (8)
#        DELAY_MS per request and connection (1)
#        CPU_CUTOVER (0) CPU_WRK (1): taskset CPU lists
#        BUSY (0): 1 keeps cutover's CPU busy in both phases with a nice-19 spinner. On a VM an
#        idle vCPU wakes slowly (the hypervisor halts it): at this light load the p99 without
#        reloads is then mostly that wake-up, which a reload (keeping the CPU busy) removes and a
#        spinner removes too. With BUSY=1 both phases run on a busy CPU, so the ratio is the
#        reload's own cost. The spinner yields to cutover at once (nice 19).
source "$(dirname "$0")/lib.sh"
need wrk; need curl; need taskset
ROWS=${ROWS:-1000000}; RUNS=${RUNS:-20}; DURATION=${DURATION:-6}; CONNS=${CONNS:-8}
DELAY_MS=${DELAY_MS:-1}; CPU_CUTOVER=${CPU_CUTOVER:-0}; CPU_WRK=${CPU_WRK:-1}
CPORT=18281; APORT=18291
quiet_machine

gen_plan "$ROWS" a >"$WORK/version-a.csv"
gen_plan "$ROWS" b >"$WORK/version-b.csv"
ln "$WORK/version-a.csv" "$WORK/plan.csv"
gen_urls "$WORK/plan.csv" 20000 >"$WORK/urls.txt"
wrk_script "$WORK/urls.txt" "$DELAY_MS" >"$WORK/urls.lua"
cutover_config "$WORK/plan.csv" "$CPORT" "$APORT" >"$WORK/cutover.toml"
start_cutover "$WORK/cutover.toml" "$CPU_CUTOVER"
if [ "${BUSY:-0}" = 1 ]; then
  taskset -c "$CPU_CUTOVER" nice -n 19 sh -c 'while :; do :; done' &
  PIDS+=($!)
  echo "# a nice-19 spinner keeps CPU $CPU_CUTOVER busy in both phases"
fi
wait_http "http://127.0.0.1:$CPORT/" 120
probe=$(head -1 "$WORK/urls.txt")
cookie=$(curl -si "http://127.0.0.1:$CPORT$probe" | awk -F'[:;] *' 'tolower($1) == "set-cookie" { print $2 }')

applied() {
  curl -s "http://127.0.0.1:$APORT/metrics" |
    awk '$1 == "cutover_config_reloads_total{result=\"applied\"}" { print $2 }'
}
# Swaps the plan at once and every 2 s until the deadline (bounded by DURATION). Starts from
# whichever version is live, so every swap is a change.
reloader() {
  local end=$((SECONDS + DURATION)) v
  while [ $SECONDS -lt "$end" ]; do
    if [ "$WORK/plan.csv" -ef "$WORK/version-a.csv" ]; then v=b; else v=a; fi
    ln -f "$WORK/version-$v.csv" "$WORK/plan.tmp"
    mv -f "$WORK/plan.tmp" "$WORK/plan.csv"
    sleep 2
  done
}
run() {
  timeout $((DURATION + 60)) taskset -c "$CPU_WRK" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
    -s "$WORK/urls.lua" -H "Cookie: $cookie" "http://127.0.0.1:$CPORT/"
}
: >"$WORK/quiet"; : >"$WORK/reload"; : >"$WORK/ratios"
for r in $(seq "$RUNS"); do
  out=$(run); grep -q "Non-2xx or 3xx" <<<"$out" && { echo "$out" >&2; exit 1; }
  echo "run $r without reloads: p99 $(p99 "$out" | tee -a "$WORK/quiet") us, $(rps "$out") req/s"
  before=$(applied)
  taskset -c "$CPU_WRK" bash -c "$(declare -f reloader); WORK=$WORK DURATION=$DURATION reloader" &
  RPID=$!; PIDS+=("$RPID")
  out=$(run); grep -q "Non-2xx or 3xx" <<<"$out" && { echo "$out" >&2; exit 1; }
  timeout 30 tail --pid="$RPID" -f /dev/null || true
  sleep 3 # let the last reload finish (and its table be freed) before the next quiet phase
  lp=$(p99 "$out" | tee -a "$WORK/reload")
  echo "run $r with reloads:    p99 $lp us, $(rps "$out") req/s, $(( $(applied) - before )) reloads applied"
  awk -v a="$lp" -v b="$(tail -1 "$WORK/quiet")" 'BEGIN { printf "%.3f\n", a / b }' >>"$WORK/ratios"
done
q=$(median <"$WORK/quiet"); l=$(median <"$WORK/reload")
echo "median p99: without reloads $q us, with reloads every 2 s $l us, ratio $(awk -v a="$l" -v b="$q" 'BEGIN { printf "%.2f", a / b }')"
echo "per-pair ratios over $RUNS pairs: median $(median <"$WORK/ratios"), quartiles $(quartiles <"$WORK/ratios")"
