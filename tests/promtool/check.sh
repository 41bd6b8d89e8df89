#!/usr/bin/env bash
# Proves cutover's metrics, alert rules and Grafana dashboard against a real Prometheus.
#
#   bash tests/promtool/check.sh --demo                     # the gate: real `cutover demo` + load
#   CUTOVER_ADMIN=127.0.0.1:9901 tests/promtool/check.sh    # a cutover that is already running
#   tests/promtool/check.sh --static                        # rule/config syntax only, no proxy
#
# Steps: promtool check rules + config; promtool check metrics on the live /metrics of a proxy that
# has served both storefronts; a throwaway Prometheus (1 s scrapes) of that proxy evaluates every
# PromQL expression of deploy/grafana/cutover.json and of the loaded rules, and fails on any that is
# invalid, returns no series, or (dashboard panels) returns only NaN, which Grafana draws as nothing
# (tests/promtool/promql_check.py).
#
# --demo runs the real binary's `demo` subcommand with config/demo.toml and its redirect plan,
# copied to a temp dir with free ports instead of 8080-8082/9901, so a demo or another proxy already
# running on this host can neither break the gate nor be checked by mistake. The load covers every
# storefront and reason: split shoppers, overrides, the /help rule, redirect hits and misses, and a
# SIGHUP reload.
#
# Bounded: after the binary is built and Prometheus installed, everything runs under
# `timeout $GATE_TIMEOUT` (default 120 s); on any exit (pass, fail, timeout, Ctrl-C) the demo and
# Prometheus this script started are stopped and the temp dir removed.
#
# Environment:
#   CUTOVER_BIN    binary for --demo; default: `cargo build --bin cutover` then
#                  ${CARGO_TARGET_DIR:-target}/debug/cutover
#   CUTOVER_ADMIN  live mode: admin address of the proxy (default 127.0.0.1:9901)
#   CUTOVER_PROXY  live mode: data-plane address; when set, the script sends the load there
#   LOAD_REQUESTS  requests per storefront (default 100)
#   GATE_TIMEOUT   seconds for the whole check (default 120)
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
GATE_TIMEOUT=${GATE_TIMEOUT:-120}

log() { printf '== %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

ensure_prometheus() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then return; fi
  log "installing Debian's prometheus package (brings promtool)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  command -v promtool >/dev/null || die "promtool still missing after installing prometheus"
}

# Unbounded setup (package install, compiling) happens once, outside the time limit; the check
# itself re-runs this script under `timeout`, which signals the whole process group on expiry.
if [ -z "${_CUTOVER_GATE_BOUNDED:-}" ]; then
  ensure_prometheus
  if [ "$MODE" = demo ] && [ -z "${CUTOVER_BIN:-}" ]; then
    log "cargo build --bin cutover"
    (cd "$ROOT" && cargo build --quiet --bin cutover) || die "cargo build failed"
    CUTOVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/cutover"
    export CUTOVER_BIN
  fi
  export _CUTOVER_GATE_BOUNDED=1
  rc=0
  timeout --kill-after=10 "$GATE_TIMEOUT" bash "${BASH_SOURCE[0]}" "$@" || rc=$?
  [ "$rc" -ne 124 ] || echo "FAIL: the check did not finish within GATE_TIMEOUT=${GATE_TIMEOUT}s" >&2
  exit "$rc"
fi

ADMIN=${CUTOVER_ADMIN:-127.0.0.1:9901}
PROXY=${CUTOVER_PROXY:-}
LOAD_REQUESTS=${LOAD_REQUESTS:-100}

TMP=$(mktemp -d)
PROM_PID=""
DEMO_PID=""

# Stops only what this script started (the demo runs in its own session, so its demo storefronts,
# which are tasks of the same process, go with it), then removes the temp dir.
stop() {
  local target=$1 probe=$2
  kill -0 "$probe" 2>/dev/null || return 0
  kill -TERM -- "$target" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$probe" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "$target" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
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

# Runs "$@" every 0.5 s until it succeeds, at most $1 seconds.
wait_for() {
  local secs=$1; shift
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Sends "$2" requests to "$1" (path, curl args after it) and prints the status codes seen.
hit() {
  local what=$1 n=$2; shift 2
  local codes=""
  for i in $(seq "$n"); do
    codes+=" $(curl -g -s -o /dev/null -w '%{http_code}' --max-time 2 "${@//@N@/$i}" || echo 000)"
  done
  printf '   %-34s %s\n' "$what" "$(tr ' ' '\n' <<<"$codes" | sed '/^$/d' | sort | uniq -c | tr -s ' \n' ' ')"
}

# A short load over every storefront and reason. Bounded: fixed counts, 2 s per curl, and the
# script-wide timeout.
send_load() {
  log "load: $LOAD_REQUESTS requests per storefront to $PROXY"
  hit "override old (?cutover=old)" "$LOAD_REQUESTS" "http://$PROXY/products/@N@?cutover=old"
  hit "override new (?cutover=new)" "$LOAD_REQUESTS" "http://$PROXY/products/@N@?cutover=new"
  hit "split (new shoppers)" 20 "http://$PROXY/collections/@N@"
  hit "rule (/help)" 10 "http://$PROXY/help/faq-@N@"
  if [ "$MODE" = demo ]; then
    # The demo plan's first entries, for shoppers on new (the table applies to them); then old
    # URLs the plan lacks, which the new demo store answers 404: redirect misses.
    local n=0
    while IFS=, read -r old_url _; do
      [ "$old_url" = old_url ] && continue
      n=$((n + 1)); [ "$n" -le 10 ] || break
      hit "redirect $old_url" 1 -H 'x-cutover-force: new' "http://$PROXY$old_url"
    done <"$TMP/redirects.csv"
    hit "redirect miss (404 on new)" 5 -H 'x-cutover-force: new' "http://$PROXY/catalog/not-in-plan-@N@"
  fi
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

log "promtool check rules"
rules_out=$(promtool check rules "$RULES") || { echo "$rules_out" >&2; die "alert rules invalid"; }
echo "$rules_out"
RULE_COUNT=$(sed -n 's/.*SUCCESS: \([0-9]*\) rules found.*/\1/p' <<<"$rules_out" | head -n1)
log "promtool check config (shipped scrape config)"
promtool check config "$ROOT/deploy/prometheus/prometheus.yml"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$DASHBOARD" || die "dashboard is not JSON"
[ "$MODE" = static ] && { log "static checks passed"; exit 0; }

if [ "$MODE" = demo ]; then
  BIN=${CUTOVER_BIN:?}
  [ -x "$BIN" ] || die "no cutover binary at $BIN (cargo build, or set CUTOVER_BIN)"
  PROXY=127.0.0.1:$(free_port)
  ADMIN=127.0.0.1:$(free_port)
  OLD=127.0.0.1:$(free_port)
  NEW=127.0.0.1:$(free_port)
  sed -e "s/127\.0\.0\.1:8080/$PROXY/; s/127\.0\.0\.1:9901/$ADMIN/" \
      -e "s/127\.0\.0\.1:8081/$OLD/; s/127\.0\.0\.1:8082/$NEW/" \
      "$ROOT/config/demo.toml" >"$TMP/demo.toml"
  cp "$ROOT/config/redirects.csv" "$TMP/redirects.csv"
  # rollout: a plan in advise mode (evaluates and reports, changes nothing), started below and
  # evaluated every 2 s, so the rollout series, its gate panels and alert rules have data.
  cat >>"$TMP/demo.toml" <<'TOML'

[rollout]
steps = [5, 25, 50, 100]
min_hold = "10m"
interval = "2s"
window = "5m"
min_requests = 100
failure_limit = 3
mode = "advise"
inconclusive_timeout = "15m"
[rollout.gates.error_ratio]
max_vs_old = 2.0
max_delta = 0.01
TOML
  for a in "$PROXY" "$ADMIN" "$OLD" "$NEW"; do
    grep -qF "$a\"" "$TMP/demo.toml" || die "config/demo.toml changed shape: could not move it to $a"
  done
  log "starting $BIN demo (proxy $PROXY, admin $ADMIN, stores $OLD $NEW)"
  NO_COLOR=1 setsid "$BIN" demo --tls --config "$TMP/demo.toml" >"$TMP/demo.log" 2>&1 &
  DEMO_PID=$!
  wait_for 30 curl -fsS --max-time 2 "http://$ADMIN/readyz" || die "demo not ready on $ADMIN within 30 s"
  kill -0 "$DEMO_PID" 2>/dev/null || die "cutover demo exited early"
  curl -fsS --max-time 5 -X POST "http://$ADMIN/admin/rollout/start" >/dev/null ||
    die "could not start the advise-only rollout on $ADMIN"
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

promql() {
  curl -fsS --max-time 2 "$PROM/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}
# At least $1 successful scrapes of cutover are stored.
scrapes_at_least() {
  local n; n=$(promql 'sum_over_time(up{job="cutover"}[5m])')
  [ -n "$n" ] && python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$n" "$1"
}
wait_for 30 scrapes_at_least 2 || die "Prometheus did not scrape $ADMIN twice within 30 s"

if [ -n "$PROXY" ]; then send_load; fi
check_both_storefronts_served || die "the proxy has not served both storefronts (set CUTOVER_PROXY to send load)"

if [ "$MODE" = demo ]; then
  gate_values_stored() { [ -n "$(promql 'count(cutover_rollout_gate_value)')" ]; }
  wait_for 30 gate_values_stored || die "Prometheus has no rollout gate values 30 s after the start"
  log "SIGHUP: a reload the dashboard must show"
  kill -HUP "$DEMO_PID"
  generation_is_2() { [ "$(promql 'max(cutover_config_generation)')" = 2 ]; }
  wait_for 20 generation_is_2 || die "Prometheus did not see config generation 2 after SIGHUP"
fi

log "promtool check metrics on live /metrics"
curl -fsS --max-time 5 "http://$ADMIN/metrics" >"$TMP/metrics.txt"
lint=$(promtool check metrics <"$TMP/metrics.txt" 2>&1) || { echo "$lint" >&2; die "promtool check metrics failed"; }
[ -z "$lint" ] || { echo "$lint" >&2; die "promtool check metrics reported problems"; }
echo "   $(grep -c '^cutover_' "$TMP/metrics.txt") samples, clean"

# Scrapes after the load so rates see it; the rules need a few evaluations on top. Every
# expression is then evaluated at that one instant, so a slow check cannot slide the dashboard's
# rate windows past the load.
before=$(promql 'sum_over_time(up{job="cutover"}[5m])')
wait_for 30 scrapes_at_least $((${before%.*} + 4)) || die "Prometheus stopped scraping $ADMIN"
AT=$(python3 -c 'import time; print(f"{time.time():.3f}")')

log "evaluating every dashboard and rule expression through $PROM at $AT"
python3 "$HERE/promql_check.py" "$DASHBOARD" "$PROM" "$RULE_COUNT" "$AT"
log "all checks passed"
