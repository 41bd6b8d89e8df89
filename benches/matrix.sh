#!/usr/bin/env bash
# The benchmark matrix of issue 22, in one run: cutover vs nginx vs HAProxy, each with its shipped
# defaults and tuned, in front of one fixed backend, on loopback.
#
#   cargo build --release --bin cutover --example fixed_rate --example tls_handshakes
#   benches/matrix.sh              # ~5 min
#   QUICK=1 benches/matrix.sh      # ~1 min: fewer points, 1 s runs
#
# Variants (every proxy ONE worker, pinned to PROXY_CPU; the backend, nginx `return 200` with a
# 100-byte body, and every load generator share LOAD_CPU; access logs off everywhere; file
# descriptor limits raised for all alike):
#   cutover          shipped defaults (adaptive upstream pool)
#   cutover-pool32   the pool of the previous default: `pool_max_idle = 32` (the "before")
#   nginx            `proxy_pass` as shipped: HTTP/1.0 to the backend, no upstream keep-alive
#   nginx-tuned      `keepalive 1024`, `proxy_http_version 1.1`, no request caps
#   haproxy          `mode http` with the stock timeouts (idle server connections reused, `safe`)
#   haproxy-tuned    `http-reuse always`
# All proxies add X-Forwarded-For; cutover also runs its split, cohort cookie and request id.
# Scenarios: HTTP/1.1 keep-alive at 32/256/1024 connections (wrk, a returning shopper's cookie);
# a new connection per request (wrk, `Connection: close`); HTTP/2 over TLS (ECDSA P-256) at 1 and
# 10 streams per client (h2load, 32 clients); new TLS handshakes (examples/tls_handshakes.rs, 32
# in parallel); latency at a fixed rate, half of nginx-tuned's peak at 32 connections
# (examples/fixed_rate.rs: open loop, latency from each request's due time); redirects from a
# 10^4 and a 10^6-row table (nginx `map`, HAProxy `map_str`).
# CPU per request: utime+stime of the proxy process (all threads; nginx's worker) from
# /proc/<pid>/stat before and after each run, divided by the requests the generator completed.
# Prints markdown tables; writes nothing into the repository. Every step is bounded by timeout.
#
# Knobs: QUICK=1, DURATION (s, 4; QUICK 1), PROXY_CPU=1, LOAD_CPU=0, CUTOVER=path/to/cutover,
#   OLD_CUTOVER=path/to/another/cutover (adds it as `cutover-old` with shipped defaults),
#   PEERS=0 (only cutover and cutover-old: a before/after of two builds, repeated quickly; the
#   fixed rate is then 10,000 req/s, having no nginx-tuned peak to halve, unless RATE is given),
#   RATE=req/s (the fixed rate, instead of half of nginx-tuned's peak at 32 connections),
#   CUTOVER_ENV="NAME=value ..." (environment of the cutover processes, e.g. _RJEM_MALLOC_CONF=dirty_decay_ms:1000).
source "$(dirname "$0")/redirects/lib.sh"
QUICK=${QUICK:-0}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
if [[ $QUICK == 1 ]]; then
  DURATION=${DURATION:-1}; CONNS_LIST="32 256"; STREAMS_LIST="10"; ROWS_LIST="10000"; FIXED=3
else
  DURATION=${DURATION:-4}; CONNS_LIST="32 256 1024"; STREAMS_LIST="1 10"; ROWS_LIST="10000 1000000"; FIXED=8
fi
[[ ${PEERS:-1} == 1 ]] || ROWS_LIST="" # the redirect runs compare with the peers only
EXAMPLES=${EXAMPLES:-$(dirname "$CUTOVER")/examples}
if ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null || ! command -v wrk >/dev/null ||
  ! command -v h2load >/dev/null || ! command -v openssl >/dev/null; then
  echo "installing nginx-light haproxy wrk nghttp2-client openssl ..." >&2
  timeout 300 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
    nginx-light haproxy wrk nghttp2-client openssl util-linux curl >/dev/null
fi
for b in "$CUTOVER" "$EXAMPLES/fixed_rate" "$EXAMPLES/tls_handshakes"; do
  [[ -x $b ]] || { echo "no $b: cargo build --release --bin cutover --example fixed_rate --example tls_handshakes" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
BACKEND=18281
HZ=$(getconf CLK_TCK)

echo "# $(date -u +%FT%TZ), QUICK=$QUICK, DURATION=${DURATION}s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
echo "# nginx $(nginx -v 2>&1 | sed 's|.*/||'), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), h2load $(h2load --version | awk '{print $2}')"

timeout 30 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" \
  -out "$WORK/cert.pem" -days 30 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/both.pem"
body=$(head -c 100 /dev/zero | tr '\0' 'x')
temps() { echo "client_body_temp_path $WORK/$1-body; proxy_temp_path $WORK/$1-proxy;"; }

cat >"$WORK/backend.conf" <<EOF
worker_processes 1; pid $WORK/backend.pid; error_log $WORK/backend.err warn;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 75s; default_type text/html;
  $(temps b)
  server { listen 127.0.0.1:$BACKEND backlog=4096; location / { return 200 "$body"; } } }
EOF

# nginx_conf NAME PORT TUNED
nginx_conf() {
  local up="http://127.0.0.1:$BACKEND" extra="" upstream=""
  if [[ $3 == 1 ]]; then
    upstream="upstream sf { server 127.0.0.1:$BACKEND; keepalive 1024; keepalive_requests 100000000; }"
    up="http://sf"
    extra='proxy_http_version 1.1; proxy_set_header Connection "";'
  fi
  cat <<EOF
worker_processes 1; pid $WORK/$1.pid; error_log $WORK/$1.err warn;
events { worker_connections 16384; }
http { access_log off; $(temps "$1")
  $( [[ $3 == 1 ]] && echo "keepalive_requests 100000000; http2_max_requests 100000000;" )
  $upstream
  server { listen 127.0.0.1:$2 backlog=4096; listen 127.0.0.1:$(($2 + 100)) ssl http2 backlog=4096;
    ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
    location / { proxy_pass $up; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; $extra } } }
EOF
}

# haproxy_conf PORT TUNED
haproxy_conf() {
  cat <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 50s
  timeout server 50s
  option forwardfor
  $( [[ $2 == 1 ]] && echo "http-reuse always" )
frontend f
  bind 127.0.0.1:$1
  bind 127.0.0.1:$(($1 + 100)) ssl crt $WORK/both.pem alpn h2,http/1.1
  default_backend b
backend b
  server s1 127.0.0.1:$BACKEND
EOF
}

# cutover_conf PORT EXTRA_STOREFRONT_LINES
cutover_conf() {
  cat <<EOF
[[listener]]
address = "127.0.0.1:$1"
[[listener]]
address = "127.0.0.1:$(($1 + 100))"
[listener.tls]
[[listener.tls.certificates]]
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"
[admin]
address = "off"
[storefront.old]
upstream = "http://127.0.0.1:$BACKEND"
$2
[storefront.new]
upstream = "http://127.0.0.1:$BACKEND"
$2
[split]
from = "old"
to = "new"
new_share = 50
[cohort]
key = "benchmark-only-key"
[limits]
# Every connection of the benchmark comes from 127.0.0.1; shoppers come from many addresses, and
# the shipped 256 per address would answer the 1024-connection run with fast 503s.
max_connections_per_client = 4096
EOF
}

declare -A PORT PID
VARIANTS=()
start_nginx() { # NAME PORT TUNED
  nginx_conf "$1" "$2" "$3" >"$WORK/$1.conf"
  taskset -c "$PROXY_CPU" nginx -p "$WORK" -c "$WORK/$1.conf" -g "daemon off; user root;" 2>"$WORK/$1.out" &
  PIDS+=($!); PORT[$1]=$2; PID[$1]=$!; VARIANTS+=("$1")
}
start_haproxy() { # NAME PORT TUNED
  haproxy_conf "$2" "$3" >"$WORK/$1.cfg"
  taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/$1.cfg" >"$WORK/$1.out" 2>&1 &
  PIDS+=($!); PORT[$1]=$2; PID[$1]=$!; VARIANTS+=("$1")
}
start_cut() { # NAME PORT BINARY EXTRA
  cutover_conf "$2" "$4" >"$WORK/$1.toml"
  taskset -c "$PROXY_CPU" env ${CUTOVER_ENV:-} "$3" --log warn serve --workers 1 --config "$WORK/$1.toml" >"$WORK/$1.out" 2>&1 &
  PIDS+=($!); PORT[$1]=$2; PID[$1]=$!; VARIANTS+=("$1")
}

taskset -c "$LOAD_CPU" nginx -p "$WORK" -c "$WORK/backend.conf" -g "daemon off; user root;" 2>"$WORK/backend.out" &
PIDS+=($!)
start_cut cutover 18283 "$CUTOVER" ""
[[ -n ${OLD_CUTOVER:-} ]] && start_cut cutover-old 18289 "$OLD_CUTOVER" ""
if [[ ${PEERS:-1} == 1 ]]; then
  start_cut cutover-pool32 18284 "$CUTOVER" "pool_max_idle = 32"
  start_nginx nginx 18285 0
  start_nginx nginx-tuned 18286 1
  start_haproxy haproxy 18287 0
  start_haproxy haproxy-tuned 18288 1
fi
wait_http "http://127.0.0.1:$BACKEND/" 30
for v in "${VARIANTS[@]}"; do
  wait_http "http://127.0.0.1:${PORT[$v]}/" 30
  if [[ $v == nginx* ]]; then # measure the worker, not the master
    PID[$v]=$(pgrep -P "${PID[$v]}" | head -n1)
  fi
  got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:${PORT[$v]}/p")
  [[ $got == "200 100" ]] || { echo "$v answered '$got', want '200 100'" >&2; exit 1; }
done
cookie=$(curl -s -D - -o /dev/null "http://127.0.0.1:${PORT[cutover]}/" |
  sed -n 's/^[Ss]et-[Cc]ookie: \(cutover_cohort=[^;]*\).*/\1/p' | tr -d '\r')

# ticks PID: "user system" CPU time of the process (all threads), in clock ticks, packed as
# user * 10^9 + system so one shell number carries both through a subtraction.
ticks() { awk '{ sub(/.*\) /, ""); printf "%.0f\n", $12 * 1000000000 + $13 }' "/proc/$1/stat"; }
# row SCENARIO VARIANT REQS SECONDS TICKS P99 : one markdown row; CPU as total (user + system)
row() {
  awk -v s="$1" -v v="$2" -v n="$3" -v t="$4" -v c="$5" -v hz="$HZ" -v p="$6" 'BEGIN {
    if (n <= 0) { printf "| %s | %s | failed | | |\n", s, v; exit }
    u = int(c / 1000000000); k = c - u * 1000000000; f = 1e6 / hz / n
    printf "| %s | %s | %.0f | %.1f (%.1f + %.1f) | %s |\n", s, v, n / t, (u + k) * f, u * f, k * f, p }'
}
# wrk_run SCENARIO VARIANT CONNS [wrk args...]
wrk_run() {
  local s=$1 v=$2 c=$3 b a out n t p
  shift 3
  b=$(ticks "${PID[$v]}")
  out=$(timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" wrk -t1 "-c$c" "-d${DURATION}s" --latency "$@" \
    "http://127.0.0.1:${PORT[$v]}/p" 2>&1) || true
  a=$(ticks "${PID[$v]}")
  if grep -q "Non-2xx" <<<"$out"; then echo "# $v: non-2xx answers in $s" >&2; fi
  n=$(requests "$out"); t=$(awk '/ requests in / { sub(/s,$/, "", $4); print $4 }' <<<"$out")
  p=$(awk '$1 == "99%" { print $2 }' <<<"$out")
  row "$s" "$v" "${n:-0}" "${t:-1}" $((a - b)) "$p"
}
header() { echo; echo "### $1"; echo; echo "| scenario | proxy | req/s | CPU µs/req (user + sys) | $2 |"; echo "|---|---|---:|---:|---:|"; }

for v in "${VARIANTS[@]}"; do # warm-up: first-touch faults, lazy setup, pools filled
  timeout 30 taskset -c "$LOAD_CPU" wrk -t1 -c256 -d1s -H "Cookie: $cookie" "http://127.0.0.1:${PORT[$v]}/p" >/dev/null 2>&1 || true
done

header "HTTP/1.1 keep-alive (wrk -t1, returning shopper)" "p99"
declare -A PEAK
for c in $CONNS_LIST; do
  for v in "${VARIANTS[@]}"; do
    line=$(wrk_run "h1 c=$c" "$v" "$c" -H "Cookie: $cookie")
    echo "$line"
    PEAK["$v/$c"]=$(awk -F'|' '{ gsub(/ /, "", $4); print $4 }' <<<"$line")
  done
done

header "A new connection per request (wrk -c32, Connection: close)" "p99"
for v in "${VARIANTS[@]}"; do
  wrk_run "close c=32" "$v" 32 -H "Cookie: $cookie" -H "Connection: close"
done

header "HTTP/2 over TLS (h2load, 32 clients, ECDSA P-256)" "mean latency"
for m in $STREAMS_LIST; do
  for v in "${VARIANTS[@]}"; do
    b=$(ticks "${PID[$v]}")
    out=$(timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" h2load -c 32 -m "$m" -D "$DURATION" \
      -H "Cookie: $cookie" "https://127.0.0.1:$((PORT[$v] + 100))/p" 2>&1) || true
    a=$(ticks "${PID[$v]}")
    n=$(awk '/^requests:/ { print $8 }' <<<"$out")
    t=$(awk '/^finished in/ { sub(/s,$/, "", $3); print $3 }' <<<"$out")
    lat=$(awk '/time for request:/ { print $6 }' <<<"$out")
    row "h2 m=$m" "$v" "${n:-0}" "${t:-1}" $((a - b)) "$lat"
  done
done

header "New TLS handshakes (32 in parallel, no resumption)" "errors"
for v in "${VARIANTS[@]}"; do
  [[ $v == *tuned* || $v == *pool32* ]] && continue # the pool does not take part in a handshake
  b=$(ticks "${PID[$v]}")
  out=$(timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" "$EXAMPLES/tls_handshakes" \
    "127.0.0.1:$((PORT[$v] + 100))" "$DURATION" 32 2>/dev/null) || true
  a=$(ticks "${PID[$v]}")
  read -r hs secs _ errs <<<"${out:-0 1 0 0}"
  row "handshakes" "$v" "$hs" "$secs" $((a - b)) "$errs"
done

rate=${RATE:-$(awk -v p="${PEAK[nginx-tuned/32]:-10000}" 'BEGIN { printf "%d", p / 2 }')}
echo
echo "### Latency at a fixed rate: $rate req/s (half of nginx-tuned's peak at 32 connections), 64 connections, ${FIXED}s"
echo
echo "| proxy | completed/s | errors | CPU µs/req | p50 µs | p99 µs | p99.9 µs | max µs |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for v in "${VARIANTS[@]}"; do
  b=$(ticks "${PID[$v]}")
  out=$(timeout $((FIXED + 30)) taskset -c "$LOAD_CPU" "$EXAMPLES/fixed_rate" "127.0.0.1:${PORT[$v]}" /p \
    "$rate" "$FIXED" 64 2>/dev/null) || true
  a=$(ticks "${PID[$v]}")
  read -r _ ok errs p50 p99 p999 max achieved <<<"${out:-0 0 0 0 0 0 0 0}"
  awk -v v="$v" -v ok="$ok" -v e="$errs" -v c=$((a - b)) -v hz="$HZ" -v p50="$p50" -v p99="$p99" \
    -v p999="$p999" -v max="$max" -v r="$achieved" 'BEGIN {
    u = int(c / 1000000000); c = u + c - u * 1000000000
    printf "| %s | %s | %s | %.1f | %s | %s | %s | %s |\n", v, r, e, (ok > 0 ? c / hz * 1e6 / ok : 0), p50, p99, p999, max }'
done

# Redirects: the proxies above are stopped first so the table servers get the core to themselves.
for p in "${PIDS[@]:1}"; do kill "$p" 2>/dev/null || true; done
header "Redirects (wrk -c32, random old URLs of the plan, every one mapped)" "p99"
for rows in $ROWS_LIST; do
  gen_plan "$rows" b >"$WORK/plan.csv"
  gen_urls "$WORK/plan.csv" 20000 >"$WORK/urls.txt"
  wrk_script "$WORK/urls.txt" >"$WORK/urls.lua"
  gen_nginx_map "$WORK/plan.csv" >"$WORK/map.conf"
  awk -F, 'NR > 1 { print $1, $2 }' "$WORK/plan.csv" >"$WORK/haproxy.map"
  cutover_config "$WORK/plan.csv" 18291 18292 >"$WORK/redirects.toml"
  cat >"$WORK/redirects-nginx.conf" <<EOF
worker_processes 1; pid $WORK/rn.pid; error_log $WORK/rn.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000; absolute_redirect off; $(temps rn)
  map_hash_max_size 4194304; map_hash_bucket_size 256;
  map \$request_uri \$target { default ""; include $WORK/map.conf; }
  server { listen 127.0.0.1:18293; location / { if (\$target != "") { return 301 \$target; } return 404; } } }
EOF
  cat >"$WORK/redirects-haproxy.cfg" <<EOF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 50s
  timeout server 50s
frontend r
  bind 127.0.0.1:18294
  http-request set-var(txn.to) url,map_str($WORK/haproxy.map)
  http-request redirect code 301 location %[var(txn.to)] if { var(txn.to) -m found }
  http-request return status 404
EOF
  declare -A RPID RPORT START
  t0=$(date +%s%N)
  taskset -c "$PROXY_CPU" "$CUTOVER" --log warn serve --workers 1 --config "$WORK/redirects.toml" >"$WORK/rc.out" 2>&1 &
  RPID[cutover]=$!; PIDS+=($!); RPORT[cutover]=18291
  wait_http "http://127.0.0.1:18291/" 300; START[cutover]=$((($(date +%s%N) - t0) / 1000000))
  t0=$(date +%s%N)
  taskset -c "$PROXY_CPU" nginx -p "$WORK" -c "$WORK/redirects-nginx.conf" -g "daemon off; user root;" 2>"$WORK/rn.out" &
  master=$!; PIDS+=($!); RPORT[nginx]=18293
  wait_http "http://127.0.0.1:18293/" 300; START[nginx]=$((($(date +%s%N) - t0) / 1000000))
  RPID[nginx]=$(pgrep -P "$master" | head -n1)
  t0=$(date +%s%N)
  taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/redirects-haproxy.cfg" >"$WORK/rh.out" 2>&1 &
  RPID[haproxy]=$!; PIDS+=($!); RPORT[haproxy]=18294
  wait_http "http://127.0.0.1:18294/" 300; START[haproxy]=$((($(date +%s%N) - t0) / 1000000))
  probe=$(head -1 "$WORK/urls.txt")
  for v in cutover nginx haproxy; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${RPORT[$v]}$probe")
    [[ $code == 301 ]] || echo "# $v answered $code for $probe" >&2
    PID[r-$v]=${RPID[$v]}; PORT[r-$v]=${RPORT[$v]}
    timeout 30 taskset -c "$LOAD_CPU" wrk -t1 -c32 -d1s -s "$WORK/urls.lua" "http://127.0.0.1:${RPORT[$v]}" >/dev/null 2>&1 || true
    b=$(ticks "${RPID[$v]}")
    out=$(timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c32 "-d${DURATION}s" --latency -s "$WORK/urls.lua" \
      "http://127.0.0.1:${RPORT[$v]}" 2>&1) || true
    a=$(ticks "${RPID[$v]}")
    n=$(requests "$out"); t=$(awk '/ requests in / { sub(/s,$/, "", $4); print $4 }' <<<"$out")
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/${RPID[$v]}/status")
    row "redirects $rows rows (start ${START[$v]} ms, RSS $((rss / 1024)) MB)" "$v" "${n:-0}" "${t:-1}" $((a - b)) \
      "$(awk '$1 == "99%" { print $2 }' <<<"$out")"
  done
  kill "${RPID[cutover]}" "$master" "${RPID[haproxy]}" 2>/dev/null || true
  for p in "${RPID[cutover]}" "$master" "${RPID[haproxy]}"; do timeout 10 tail --pid="$p" -f /dev/null || true; done
done
echo
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
