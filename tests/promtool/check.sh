#!/usr/bin/env bash
# Proves cutover's metrics, alert rules and Grafana dashboard against a real Prometheus.
#
#   CUTOVER_ADMIN=127.0.0.1:9901 tests/promtool/check.sh    # a cutover that is already running
#   tests/promtool/check.sh --demo                          # starts "$CUTOVER_BIN demo" and loads it
#   tests/promtool/check.sh --static                        # rule/config syntax only, no proxy
#
# Steps: promtool check rules + config; promtool check metrics on the live /metrics of a proxy that
# has served both storefronts; a throwaway Prometheus (1 s scrapes) of that proxy evaluates every
# PromQL expression of deploy/grafana/cutover.json and of the loaded rules, and fails on any that is
# invalid or returns no series (tests/promtool/promql_check.py).
#
# Environment:
#   CUTOVER_ADMIN  admin address of the proxy (default 127.0.0.1:9901, the demo's)
#   CUTOVER_PROXY  data-plane address; when set (always in --demo: 127.0.0.1:8080) the script sends
#                  a short bounded load to both storefronts via the ?cutover=old|new override
#   CUTOVER_BIN    binary for --demo (default target/debug/cutover)
#   LOAD_REQUESTS  requests per storefront (default 100)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/promtool"
DASHBOARD="$ROOT/deploy/grafana/cutover.json"
RULES="$ROOT/deploy/prometheus/alerts.yml"
MODE=live
case "${1:-}" in
  --demo) MODE=demo ;;
  --static) MODE=static ;;
  "") ;;
  *) echo "usage: $0 [--demo|--static]" >&2; exit 2 ;;
esac
ADMIN=${CUTOVER_ADMIN:-127.0.0.1:9901}
PROXY=${CUTOVER_PROXY:-}
LOAD_REQUESTS=${LOAD_REQUESTS:-100}

TMP=$(mktemp -d)
PROM_PID=""
DEMO_PID=""

# Stops only what this script started (the demo runs in its own process group, so its demo
# storefronts go with it), then removes the temp dir.
stop() {
  local target=$1 probe=$2
  kill -0 "$probe" 2>/dev/null || return 0
  kill -TERM -- "$target" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$probe" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "$target" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  [ -z "$PROM_PID" ] || stop "$PROM_PID" "$PROM_PID"
  [ -z "$DEMO_PID" ] || stop "-$DEMO_PID" "$DEMO_PID"
  if [ "$rc" -ne 0 ]; then
    [ -s "$TMP/prometheus.log" ] && { echo "--- prometheus log (tail)"; tail -n 20 "$TMP/prometheus.log"; } >&2
    [ -s "$TMP/demo.log" ] && { echo "--- cutover demo log (tail)"; tail -n 30 "$TMP/demo.log"; } >&2
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# Runs "$@" every 0.5 s until it succeeds, at most $1 seconds.
wait_for() {
  local secs=$1; shift
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

ensure_prometheus() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then return; fi
  log "installing Debian's prometheus package (brings promtool)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  command -v promtool >/dev/null || die "promtool still missing after installing prometheus"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Sends LOAD_REQUESTS requests to each side through the override, plus a few distinct paths.
# Bounded: every curl has a 5 s ceiling and the loop a fixed count.
send_load() {
  local n codes
  log "load: $LOAD_REQUESTS requests per storefront to $PROXY"
  for side in old new; do
    codes=""
    for n in $(seq "$LOAD_REQUESTS"); do
      codes+=" $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        "http://$PROXY/products/$((n % 7))?cutover=$side" || echo 000)"
    done
    echo "   $side: $(tr ' ' '\n' <<<"$codes" | sed '/^$/d' | sort | uniq -c | tr -s ' \n' ' ')"
  done
  curl -s -o /dev/null --max-time 5 "http://$PROXY/" || true
}

# Fails unless the live metrics show requests on at least two storefronts.
check_both_storefronts_served() {
  curl -fsS --max-time 5 "http://$ADMIN/metrics" | python3 -c '
import re, sys
served = {}
for line in sys.stdin:
    m = re.match(r"cutover_requests_total\{(.*)\} (\S+)$", line)
    if m:
        sf = re.search(r"storefront=\"([^\"]*)\"", m.group(1)).group(1)
        served[sf] = served.get(sf, 0) + float(m.group(2))
busy = {k: v for k, v in served.items() if v > 0}
print("   requests per storefront:", served)
sys.exit(0 if len(busy) >= 2 else 1)'
}

ensure_prometheus

log "promtool check rules"
rules_out=$(promtool check rules "$RULES") || { echo "$rules_out" >&2; die "alert rules invalid"; }
echo "$rules_out"
RULE_COUNT=$(sed -n 's/.*SUCCESS: \([0-9]*\) rules found.*/\1/p' <<<"$rules_out" | head -n1)
log "promtool check config (shipped scrape config)"
promtool check config "$ROOT/deploy/prometheus/prometheus.yml"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$DASHBOARD" || die "dashboard is not JSON"
[ "$MODE" = static ] && { log "static checks passed"; exit 0; }

if [ "$MODE" = demo ]; then
  BIN=${CUTOVER_BIN:-$ROOT/target/debug/cutover}
  [ -x "$BIN" ] || die "no cutover binary at $BIN (cargo build, or set CUTOVER_BIN)"
  ADMIN=127.0.0.1:9901
  PROXY=127.0.0.1:8080
  log "starting $BIN demo"
  setsid "$BIN" demo >"$TMP/demo.log" 2>&1 &
  DEMO_PID=$!
  wait_for 60 curl -fsS --max-time 2 "http://$ADMIN/readyz" || die "demo not ready on $ADMIN within 60 s"
  # A demo that died on "address in use" would leave us checking someone else's process.
  kill -0 "$DEMO_PID" 2>/dev/null || die "cutover demo exited early"
fi

log "proxy admin at $ADMIN"
wait_for 10 curl -fsS --max-time 2 "http://$ADMIN/healthz" || die "no cutover admin listener at $ADMIN"

PORT=$(free_port)
PROM="http://127.0.0.1:$PORT"
cp "$RULES" "$TMP/alerts.yml"
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: cutover
    static_configs:
      - targets: ["$ADMIN"]
EOF
log "starting Prometheus on 127.0.0.1:$PORT"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
  --web.listen-address="127.0.0.1:$PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
wait_for 30 curl -fsS --max-time 2 "$PROM/-/ready" || die "Prometheus not ready within 30 s"

# At least $1 successful scrapes of cutover are stored.
scrapes_at_least() {
  curl -fsS --max-time 2 "$PROM/api/v1/query" \
    --data-urlencode 'query=sum_over_time(up{job="cutover"}[5m])' |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; sys.exit(0 if r and float(r[0]["value"][1]) >= float(sys.argv[1]) else 1)' "$1"
}
wait_for 30 scrapes_at_least 2 || die "Prometheus did not scrape $ADMIN twice within 30 s"

if [ -n "$PROXY" ]; then send_load; fi
check_both_storefronts_served || die "the proxy has not served both storefronts (set CUTOVER_PROXY to send load)"

log "promtool check metrics on live /metrics"
curl -fsS --max-time 5 "http://$ADMIN/metrics" >"$TMP/metrics.txt"
lint=$(promtool check metrics <"$TMP/metrics.txt" 2>&1) || { echo "$lint" >&2; die "promtool check metrics failed"; }
[ -z "$lint" ] || { echo "$lint" >&2; die "promtool check metrics reported problems"; }
echo "   $(grep -c '^cutover_' "$TMP/metrics.txt") samples, clean"

# Scrapes after the load so rates see it; the rules need a few evaluations on top.
before=$(curl -fsS --max-time 2 "$PROM/api/v1/query" --data-urlencode 'query=sum_over_time(up{job="cutover"}[5m])' |
  python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)')
wait_for 30 scrapes_at_least $((before + 4)) || die "Prometheus stopped scraping $ADMIN"

log "evaluating every dashboard and rule expression through $PROM"
timeout 120 python3 "$HERE/promql_check.py" "$DASHBOARD" "$PROM" "$RULE_COUNT"
log "all checks passed"
