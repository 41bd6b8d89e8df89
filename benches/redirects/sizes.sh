#!/usr/bin/env bash
# Does redirect throughput fall as the table grows? One cutover per table size (10^4, 10^5,
# 10^6 rows by default), all started at once, all pinned to CPU 0 (only the one under load is
# busy), wrk pinned to CPU 1. Runs are interleaved by size (small, medium, large, small, ...), so
# drift on a shared machine hits every size alike. Each run requests URLS distinct plan URLs
# picked at random (default 200,000: on the 10^6 table that is a fifth of it, far more than the
# CPU caches hold, so lookups pay the memory latency they would with real traffic).
#
# Reports, per size: median req/s, median requests per CPU-second of that cutover process, and
# both relative to the smallest table.
#
#   cargo build --release && benches/redirects/sizes.sh
#   env: SIZES ("10000 100000 1000000") URLS (200000) RUNS (3) DURATION s (10) CONNS (32)
source "$(dirname "$0")/lib.sh"
need wrk; need curl; need taskset
SIZES=${SIZES:-10000 100000 1000000}; URLS=${URLS:-200000}
RUNS=${RUNS:-3}; DURATION=${DURATION:-10}; CONNS=${CONNS:-32}
quiet_machine

port=18281
declare -A PORT PID COOKIE
for n in $SIZES; do
  gen_plan "$n" s >"$WORK/plan-$n.csv"
  gen_urls "$WORK/plan-$n.csv" "$URLS" >"$WORK/urls-$n.txt"
  wrk_script "$WORK/urls-$n.txt" >"$WORK/urls-$n.lua"
  cutover_config "$WORK/plan-$n.csv" "$port" "$((port + 50))" >"$WORK/cutover-$n.toml"
  taskset -c 0 "$CUTOVER" --log warn serve --workers 1 --config "$WORK/cutover-$n.toml" \
    >"$WORK/cutover-$n.out" 2>&1 &
  PID[$n]=$!
  PIDS+=("${PID[$n]}")
  PORT[$n]=$port
  port=$((port + 1))
done
for n in $SIZES; do
  wait_http "http://127.0.0.1:${PORT[$n]}/" 120
  # A returning shopper: send back the cohort cookie cutover sets on the first visit.
  probe=$(head -1 "$WORK/urls-$n.txt")
  COOKIE[$n]=$(curl -si "http://127.0.0.1:${PORT[$n]}$probe" | awk -F'[:;] *' 'tolower($1) == "set-cookie" { print $2 }')
  loc=$(curl -si -H "Cookie: ${COOKIE[$n]}" "http://127.0.0.1:${PORT[$n]}$probe" | awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')
  [ -n "$loc" ] || { echo "no redirect from the $n-row table for $probe" >&2; exit 1; }
  echo "# $n rows: $probe -> $loc"
done

for r in $(seq "$RUNS"); do
  for n in $SIZES; do
    before=$(cpu_ticks "${PID[$n]}")
    out=$(timeout $((DURATION + 60)) taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" \
      -s "$WORK/urls-$n.lua" -H "Cookie: ${COOKIE[$n]}" "http://127.0.0.1:${PORT[$n]}/")
    ticks=$(( $(cpu_ticks "${PID[$n]}") - before ))
    grep -q "Non-2xx or 3xx" <<<"$out" && { echo "$out" >&2; exit 1; }
    rps "$out" >>"$WORK/$n.rps"
    awk -v q="$(requests "$out")" -v t="$ticks" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { printf "%.0f\n", q / (t / hz) }' >>"$WORK/$n.cpu"
    echo "run $r, $n rows: $(rps "$out") req/s, $(tail -1 "$WORK/$n.cpu") req per CPU-second"
  done
done

first=""
printf "%-9s %-12s %-10s %-18s %s\n" rows "req/s" "vs first" "req per CPU-s" "vs first"
for n in $SIZES; do
  r=$(median <"$WORK/$n.rps"); c=$(median <"$WORK/$n.cpu")
  [ -n "$first" ] || { first_r=$r; first_c=$c; first=$n; }
  printf "%-9s %-12s %-10s %-18s %s\n" "$n" "$r" "$(awk -v a="$r" -v b="$first_r" 'BEGIN { printf "%.2f", a / b }')" \
    "$c" "$(awk -v a="$c" -v b="$first_c" 'BEGIN { printf "%.2f", a / b }')"
done
