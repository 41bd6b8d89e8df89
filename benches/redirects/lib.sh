# Shared by the redirect-table benchmarks: plan generation, nginx map, wrk script, cutover
# start/stop. Source it; every started process is recorded and killed by `cleanup` (trap).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CUTOVER=${CUTOVER:-$ROOT/target/release/cutover}
WORK=$(mktemp -d /tmp/cutover-bench.XXXXXX)
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

need() { command -v "$1" >/dev/null || { echo "missing tool: $1" >&2; exit 2; }; }

# gen_plan ROWS VERSION > plan.csv: typical e-commerce rows (as examples/redirects_load.rs):
# 60% query-string product URLs, 30% category pages, 10% legacy product.php; targets carry
# VERSION so two versions differ only in targets.
gen_plan() {
  awk -v n="$1" -v v="$2" 'BEGIN {
    split("linen ceramic oak wool copper cotton vintage organic", w, " ");
    print "old_url,new_url,status";
    for (i = 0; i < n; i++) {
      word = w[i % 8 + 1]; k = i % 10;
      if (k <= 5) printf "/index.php?route=product/product&product_id=%d,/%s/products/%s-table-lamp-%d,301\n", i, v, word, i;
      else if (k <= 8) printf "/category/%s/item-%d.html,/%s/collections/%s/item-%d,301\n", word, i, v, word, i;
      else printf "/product.php?id=%d,/%s/products/%s-%d,301\n", i, v, word, i;
    }
  }'
}

# gen_urls PLAN COUNT > urls.txt: COUNT old URLs sampled from the plan (every one has an entry).
gen_urls() {
  awk -F, -v c="$2" 'NR > 1 { u[NR] = $1; n = NR } END { srand(42); for (j = 0; j < c; j++) print u[int(2 + rand() * (n - 1))] }' "$1"
}

# gen_nginx_map PLAN > map.conf: the same table as an nginx map on $request_uri.
gen_nginx_map() {
  awk -F, 'NR > 1 { printf "\"%s\" \"%s\";\n", $1, $2 }' "$1"
}

# wrk_script URLS [DELAY_MS] > script.lua: a random URL of the list per request, formatted once
# in init so the load generator spends its time sending, not in Lua.
wrk_script() {
  cat <<LUA
local reqs = {}
init = function(args)
  for line in io.lines("$1") do reqs[#reqs + 1] = wrk.format("GET", line) end
  math.randomseed(7)
end
request = function()
  return reqs[math.random(#reqs)]
end
LUA
  if [ -n "${2:-}" ]; then
    echo "delay = function() return $2 end"
  fi
}

# cutover_config PLAN PORT ADMIN_PORT > cutover.toml: share 100%, the plan as one table.
cutover_config() {
  cat <<TOML
[[listener]]
address = "127.0.0.1:$2"
[admin]
address = "127.0.0.1:$3"
[storefront.old]
upstream = "http://127.0.0.1:9"
[storefront.new]
upstream = "http://127.0.0.1:9"
[split]
from = "old"
to = "new"
new_share = 100
[cohort]
key = "benchmark-key"
[[redirects]]
name = "plan"
file = "$1"
TOML
}

# wait_http URL SECONDS: until something answers.
wait_http() {
  local deadline=$((SECONDS + $2))
  until curl -s -o /dev/null "$1"; do
    [ $SECONDS -lt $deadline ] || { echo "no answer from $1 within $2 s" >&2; exit 1; }
    sleep 0.2
  done
}

# start_cutover CONFIG CPU: one runtime worker thread, pinned to CPU; records the PID.
start_cutover() {
  taskset -c "$2" "$CUTOVER" --log warn serve --workers 1 --config "$1" \
    >"$WORK/cutover.out" 2>&1 &
  CUTOVER_PID=$!
  PIDS+=("$CUTOVER_PID")
}

# rps WRK_OUTPUT: requests/s figure.
rps() { awk '/^Requests\/sec:/ { print $2 }' <<<"$1"; }
# p99 WRK_OUTPUT: 99th percentile latency in microseconds.
p99() {
  awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
       if (u == "us") print v; else if (u == "ms") print v * 1000; else if (u == "s") print v * 1000000 }' <<<"$1"
}
# requests WRK_OUTPUT: total requests of the run.
requests() { awk '/ requests in / { print $1 }' <<<"$1"; }
# cpu_ticks PID: user + system CPU time of the process (all threads), in clock ticks.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# quartiles < numbers: "Q1-Q3" (nearest rank).
quartiles() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 3) / 4)] "-" a[int((3 * NR + 3) / 4)] }'; }
# Waits (at most WAIT_QUIET s, default 600) for the 1-minute load average to drop below
# QUIET_LOAD (default 1.0), then prints it: other work on the machine skews every figure.
quiet_machine() {
  local deadline=$((SECONDS + ${WAIT_QUIET:-600}))
  while awk -v t="${QUIET_LOAD:-1.0}" '{ exit !($1 >= t) }' /proc/loadavg && [ $SECONDS -lt $deadline ]; do
    sleep 5
  done
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
}
