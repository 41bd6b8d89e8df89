#!/usr/bin/env bash
# Redirect answers per second: cutover vs nginx serving the same table as a `map` on
# $request_uri with `return 301`. One worker each (nginx worker_processes 1, cutover
# serve --workers 1, a single-threaded runtime), both pinned to CPU 0, wrk pinned to CPU 1; runs interleaved
# (cutover, nginx, cutover, nginx, ...), median of RUNS and the ratio. Besides req/s (which other
# work on a shared machine skews), requests per CPU-second of the server process: the cost of an
# answer, whatever else runs.
#
#   cargo build --release && benches/redirects/vs_nginx.sh
#   env: ROWS (1000000) RUNS (3) DURATION s (10) CONNS (32) WARMUP s (2, untimed, each server,
#        as benches/proxy/run.sh does: first-touch page faults and lazy setup are not the answer rate)
source "$(dirname "$0")/lib.sh"
need nginx; need wrk; need curl; need taskset
ROWS=${ROWS:-1000000}; RUNS=${RUNS:-3}; DURATION=${DURATION:-10}; CONNS=${CONNS:-32}; WARMUP=${WARMUP:-2}
CPORT=18181; APORT=18191; NPORT=18182
quiet_machine

gen_plan "$ROWS" b >"$WORK/plan.csv"
gen_urls "$WORK/plan.csv" 20000 >"$WORK/urls.txt"
gen_nginx_map "$WORK/plan.csv" >"$WORK/map.conf"
wrk_script "$WORK/urls.txt" >"$WORK/urls.lua"
cutover_config "$WORK/plan.csv" "$CPORT" "$APORT" >"$WORK/cutover.toml"
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  absolute_redirect off;
  map_hash_max_size 4194304;
  map_hash_bucket_size 256;
  map \$request_uri \$target {
    default "";
    include $WORK/map.conf;
  }
  server {
    listen 127.0.0.1:$NPORT;
    location / {
      if (\$target != "") { return 301 \$target; }
      return 404;
    }
  }
}
NGINX

t0=$SECONDS
start_cutover "$WORK/cutover.toml" 0
wait_http "http://127.0.0.1:$CPORT/" 120
echo "# cutover answering after $((SECONDS - t0)) s (${ROWS} rows)"
t0=$SECONDS
taskset -c 0 nginx -p "$WORK" -c "$WORK/nginx.conf" -g "daemon off;" 2>"$WORK/nginx.out" &
PIDS+=($!)
wait_http "http://127.0.0.1:$NPORT/" 300
echo "# nginx answering after $((SECONDS - t0)) s"

# A returning shopper: send back the cohort cookie cutover sets on the first visit.
probe=$(head -1 "$WORK/urls.txt")
cookie=$(curl -si "http://127.0.0.1:$CPORT$probe" | awk -F'[:;] *' 'tolower($1) == "set-cookie" { print $2 }')
c_loc=$(curl -si -H "Cookie: $cookie" "http://127.0.0.1:$CPORT$probe" | awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')
n_loc=$(curl -si "http://127.0.0.1:$NPORT$probe" | awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')
echo "# $probe -> cutover $c_loc, nginx $n_loc"
[ -n "$c_loc" ] && [ "$c_loc" = "$n_loc" ] || { echo "the two do not answer alike" >&2; exit 1; }

nginx_worker=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)
run() { timeout $((DURATION + 60)) taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$WORK/urls.lua" "$@"; }
# measure NAME PID wrk-args...: one run; appends req/s and requests per CPU-second of PID.
measure() {
  local name=$1 pid=$2 before out ticks n
  shift 2
  before=$(cpu_ticks "$pid")
  out=$(run "$@")
  ticks=$(( $(cpu_ticks "$pid") - before ))
  grep -q "Non-2xx or 3xx" <<<"$out" && { echo "$out" >&2; exit 1; }
  n=$(requests "$out")
  rps "$out" >>"$WORK/$name.rps"
  awk -v n="$n" -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f\n", n / (t / hz) }' >>"$WORK/$name.cpu"
  echo "run $r $name: $(rps "$out") req/s, $n requests in $ticks CPU ticks: $(tail -1 "$WORK/$name.cpu") req per CPU-second"
}
echo "# warming up (${WARMUP} s each)"
run_for() { local d=$1; shift; timeout $((d + 60)) taskset -c 1 wrk -t1 -c"$CONNS" -d"${d}s" -s "$WORK/urls.lua" "$@" >/dev/null; }
run_for "$WARMUP" -H "Cookie: $cookie" "http://127.0.0.1:$CPORT/"
run_for "$WARMUP" "http://127.0.0.1:$NPORT/"
for r in $(seq "$RUNS"); do
  measure cutover "$CUTOVER_PID" -H "Cookie: $cookie" "http://127.0.0.1:$CPORT/"
  measure nginx "$nginx_worker" "http://127.0.0.1:$NPORT/"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
c=$(median <"$WORK/cutover.rps"); n=$(median <"$WORK/nginx.rps")
echo "median req/s: cutover $c, nginx $n, ratio cutover/nginx $(ratio "$c" "$n")"
c=$(median <"$WORK/cutover.cpu"); n=$(median <"$WORK/nginx.cpu")
echo "median requests per CPU-second of the server: cutover $c, nginx $n, ratio $(ratio "$c" "$n")"
echo "RSS after the runs: cutover $(ps -o rss= -p "$CUTOVER_PID") KiB, nginx master $(ps -o rss= -p "$(cat "$WORK/nginx.pid")") KiB + worker $(ps -o rss= -p "$nginx_worker") KiB"
