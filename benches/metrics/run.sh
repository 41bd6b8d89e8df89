#!/usr/bin/env bash
# Metrics overhead benchmark (issue 4, "Performance"): proxied requests/s with metrics and the access
# log (to a file) on, against metrics off, in the same run, interleaved. Not a test: prints figures.
#
#   bash benches/metrics/run.sh               # builds both release binaries if missing
#   ROUNDS=7 DURATION=15 bash benches/metrics/run.sh
#
# Variants, each its own `cutover serve` process, all started once and kept running (idle ones cost
# nothing), measured in rotating order each round so drift and thermal effects spread evenly:
#   on       default build, access log on (JSON lines to a file): what production runs
#   metrics  default build, access log off: attributes the access log's share
#   off      `--features no-metrics` build (per-request recording compiled to no-ops), log off
# "Metrics off" is a separate build rather than a runtime switch so the code under test in `on` is
# exactly the shipped code, with no extra branch.
#
# Placement on a 2-core machine: each proxy has one tokio worker (TOKIO_WORKER_THREADS=1) pinned to
# CPU 0; wrk (1 thread) and the upstream (the real `cutover demo` stores, one worker) share CPU 1.
# Besides requests/s the script reports the proxy's own CPU time per request (from /proc), which
# does not depend on whether the proxy or the load side is the bottleneck.
#
# Environment: ROUNDS (5), DURATION seconds per measurement (10), CONNS (32), WARMUP seconds (3),
# BIN_ON / BIN_OFF (binaries; default target/bench-metrics/cutover-{metrics,no-metrics}).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/bench-metrics"
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-3}
BIN_ON=${BIN_ON:-$OUT/cutover-metrics}
BIN_OFF=${BIN_OFF:-$OUT/cutover-no-metrics}
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }

mkdir -p "$OUT"
if [ ! -x "$BIN_ON" ]; then
  (cd "$ROOT" && cargo build --release --bin cutover) && cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/cutover" "$BIN_ON"
fi
if [ ! -x "$BIN_OFF" ]; then
  (cd "$ROOT" && cargo build --release --bin cutover --features no-metrics) &&
    cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/cutover" "$BIN_OFF"
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ok() { for _ in $(seq 100); do curl -fs --max-time 1 -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }

OLD=$(free_port); NEW=$(free_port); UP_PROXY=$(free_port)
cat >"$TMP/upstream.toml" <<EOF
[[listener]]
address = "127.0.0.1:$UP_PROXY"
[admin]
address = "off"
[storefront.old]
upstream = "http://127.0.0.1:$OLD"
[storefront.new]
upstream = "http://127.0.0.1:$NEW"
[split]
from = "old"
to = "new"
new_share = 50
EOF
# The upstream: the demo's two stores (and an idle proxy nobody uses), on CPU 1.
TOKIO_WORKER_THREADS=1 CUTOVER_LOG=warn taskset -c 1 "$BIN_ON" demo --config "$TMP/upstream.toml" >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
wait_ok "http://127.0.0.1:$OLD/"

declare -A PORT ADMIN PID
start_proxy() { # name binary access_log(true|false)
  local name=$1 bin=$2 log=$3
  PORT[$name]=$(free_port); ADMIN[$name]=$(free_port)
  cat >"$TMP/$name.toml" <<EOF
[[listener]]
address = "127.0.0.1:${PORT[$name]}"
[admin]
address = "127.0.0.1:${ADMIN[$name]}"
[storefront.old]
upstream = "http://127.0.0.1:$OLD"
[storefront.new]
upstream = "http://127.0.0.1:$NEW"
[split]
from = "old"
to = "new"
new_share = 50
[cohort]
key = "bench-key"
[access_log]
enabled = $log
path = "access-$name.log"
EOF
  TOKIO_WORKER_THREADS=1 CUTOVER_LOG=warn taskset -c 0 "$bin" serve --config "$TMP/$name.toml" >"$TMP/$name.out" 2>&1 &
  PID[$name]=$!
  PIDS+=($!)
  wait_ok "http://127.0.0.1:${ADMIN[$name]}/readyz"
}
start_proxy on "$BIN_ON" true
start_proxy metrics "$BIN_ON" false
start_proxy off "$BIN_OFF" false
VARIANTS=(on metrics off)

# A returning shopper: a valid cohort cookie (same key everywhere), so every request takes the
# split path with a signed-cookie check and no Set-Cookie, like most page views.
COOKIE=$(curl -si "http://127.0.0.1:${PORT[on]}/" | sed -n 's/^[Ss]et-[Cc]ookie: \(cutover_cohort=[^;]*\).*/\1/p' | head -n1)
[ -n "$COOKIE" ] || { echo "no cohort cookie from the proxy" >&2; exit 1; }
URL_PATH=/products/42

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure NAME SECONDS -> "requests rps p50 p99 cpu_us_per_request". A run with socket errors or
# non-2xx answers (seen only when something else on the machine stalls us for seconds) is
# reported on stderr and repeated, at most twice.
measure() {
  local name=$1 secs=$2 out t0 t1 reqs rps attempt
  for attempt in 1 2 3; do
    t0=$(cpu_ticks "${PID[$name]}")
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${secs}s" --latency -H "Cookie: $COOKIE" "http://127.0.0.1:${PORT[$name]}$URL_PATH")
    t1=$(cpu_ticks "${PID[$name]}")
    grep -q "Non-2xx\|Socket errors" <<<"$out" || break
    echo "   ($name: $(grep -h "Non-2xx\|Socket errors" <<<"$out" | xargs); repeated)" >&2
    [ "$attempt" -lt 3 ] || { echo "$out" >&2; return 1; }
  done
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  echo "$reqs $rps $(awk '$1=="50%" {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out") $(python3 -c "print(f'{($t1-$t0)/$HZ/$reqs*1e6:.1f}')")"
}

echo "cutover metrics overhead: $ROUNDS rounds x ${DURATION}s per variant, wrk -t1 -c$CONNS, GET $URL_PATH"
echo "binaries: on/metrics=$BIN_ON off=$BIN_OFF; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these cores adds noise; compare within rounds)"
for v in "${VARIANTS[@]}"; do measure "$v" "$WARMUP" >/dev/null; done
sleep 0.5
LINES=$(wc -l <"$TMP/access-on.log"); : >"$TMP/access-on.log"
declare -A TOTAL
for v in "${VARIANTS[@]}"; do TOTAL[$v]=0; done
RESULTS="$TMP/results"
: >"$RESULTS"
printf '%-6s %-8s %10s %10s %8s %8s %12s\n' round variant requests req/s p50 p99 cpu_us/req
for r in $(seq "$ROUNDS"); do
  order=("${VARIANTS[@]:$(((r - 1) % 3))}" "${VARIANTS[@]:0:$(((r - 1) % 3))}")
  for v in "${order[@]}"; do
    m=$(measure "$v" "$DURATION") || { echo "$v: failed three times" >&2; exit 1; }
    read -r reqs rps p50 p99 cpu <<<"$m"
    TOTAL[$v]=$((TOTAL[$v] + reqs))
    printf '%-6s %-8s %10s %10s %8s %8s %12s\n' "$r" "$v" "$reqs" "$rps" "$p50" "$p99" "$cpu"
    echo "$r $v $rps $cpu" >>"$RESULTS"
    if [ "$v" = on ]; then # count and empty the log between runs, so it never fills the disk
      sleep 0.1; LINES=$((LINES + $(wc -l <"$TMP/access-on.log"))); : >"$TMP/access-on.log"
    fi
  done
done

# Sanity: metrics really on in on/metrics and off in off; the access log really written.
scraped() { curl -fs "http://127.0.0.1:${ADMIN[$1]}/metrics" | awk '/^cutover_requests_total/ {s += $2} END {print s + 0}'; }
dropped() { curl -fs "http://127.0.0.1:${ADMIN[$1]}/metrics" | awk '/^cutover_access_log_dropped_total/ {print $2}'; }
sleep 1
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "check: requests counted by /metrics: on=$(scraped on) metrics=$(scraped metrics) off=$(scraped off) (off must be 0)"
echo "check: access log lines: $((LINES + $(wc -l <"$TMP/access-on.log"))), dropped: $(dropped on)"

python3 - "$RESULTS" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by, rounds = {}, {}
for r, v, rps, cpu in rows:
    by.setdefault(v, []).append((float(rps), float(cpu)))
    rounds.setdefault(r, {})[v] = (float(rps), float(cpu))
med = {v: (statistics.median(r for r, _ in xs), statistics.median(c for _, c in xs)) for v, xs in by.items()}
# Paired within each round (same minute, same neighbours on the machine), then the median.
paired = {
    v: (
        statistics.median(x[v][0] / x["off"][0] - 1 for x in rounds.values()),
        statistics.median(x[v][1] / x["off"][1] - 1 for x in rounds.values()),
    )
    for v in by
}
print()
print("| variant | median req/s | req/s vs off (paired median) | median proxy CPU us/req | CPU/req vs off (paired median) |")
print("|---|---|---|---|---|")
for v in ("off", "metrics", "on"):
    rps, cpu = med[v]
    print(f"| {v} | {rps:,.0f} | {100 * paired[v][0]:+.1f}% | {cpu:.1f} | {100 * paired[v][1]:+.1f}% |")
EOF
