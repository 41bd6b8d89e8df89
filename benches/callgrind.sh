#!/usr/bin/env bash
# Instructions per request, counted by callgrind: a figure that, unlike requests/s, does not move
# with whatever else runs on a shared machine, so two builds can be compared one after the other.
#
#   benches/callgrind.sh proxy      # GET proxied to a fixed backend (nginx `return 200`, 1 KiB)
#   benches/callgrind.sh redirect   # answers from a 10^4-row redirect plan (ROWS to change)
#   benches/callgrind.sh nginx      # the proxy run through nginx instead, tuned as in matrix.sh
#                                   # (`keepalive 1024`, HTTP/1.1 upstream): the peer's figure
#
# cutover runs under `valgrind --tool=callgrind` with `serve --workers 1`; h2load (HTTP/1.1, 8
# connections) sends WARMUP requests, the counters are zeroed, then N requests are counted. The
# count covers every thread of the process (the idle ones cost nothing) and includes the event
# loop, so it is the whole cost of a request in user space. Kernel time is not counted.
#
# env: CUTOVER=path/to/cutover (default target/release/cutover), N (20000), WARMUP (2000),
#      CONFIG (proxy mode: another config, e.g. proxy/cutover-inventory.toml),
#      ROWS (10000), KEEP=1 keeps the callgrind output (for callgrind_annotate) and prints its path,
#      C (8): client connections. With C=256, hundreds of requests are in flight at once, and what
#      each one touches competes for the cache: CACHE=1 simulates a 32 KiB L1d and a 2 MiB L2
#      (this machine's per-core sizes) and prints the misses per request beside the instructions.
#      NEW_SHOPPERS=1: the cohort cookie is not sent back, so every request is a first visit
#      (or a crawler's, which keeps no cookies) and is answered with a new one.
#      STOREFRONT_HEADERS=1: the backend answers with the headers a storefront's page carries
#      (cache control, vary, its own x- headers, cookies: 12 lines instead of nginx's 4).
#      BROWSER_HEADERS=1: requests carry the headers a browser sends (accept-*, sec-ch-ua-*,
#      sec-fetch-*, a browser's user-agent: 13 lines instead of h2load's 4).
#      Above C=64 the config's `pool_max_idle = 64` is dropped (the shipped adaptive pool then
#      sizes itself), or the run would measure connection churn instead.
set -euo pipefail
mode=${1:-proxy}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/redirects/lib.sh"
need valgrind; need callgrind_control; need callgrind_annotate; need h2load; need nginx; need curl
N=${N:-20000}; WARMUP=${WARMUP:-2000}; C=${C:-8}
cache=()
[[ ${CACHE:-0} == 1 ]] && cache=(--cache-sim=yes --D1=32768,8,64 --LL=2097152,16,64)
PORT=18611; BACKEND_PORT=18081

case $mode in
  proxy | nginx)
    body=$(head -c 1024 /dev/zero | tr '\0' 'x')
    rich=()
    [[ ${STOREFRONT_HEADERS:-0} == 1 ]] && rich=(-e "/return 200/i\\
            add_header Cache-Control \"public, max-age=60\"; add_header Vary Accept-Encoding;\\
            add_header X-Request-Id 0d7c9b2e-5a41-4e8f-9a6b-1f2e3d4c5b6a; add_header X-Shop-Id 48213;\\
            add_header X-Cache HIT; add_header X-Content-Type-Options nosniff;\\
            add_header Set-Cookie \"_shop_session=ab12cd34; Path=/; HttpOnly\";\\
            add_header Set-Cookie \"cart_ts=1733390000; Path=/\";")
    sed -e "s|@PREFIX@|$WORK|g" -e "s|@BODY@|$body|" "${rich[@]}" "$here/proxy/backend.conf" >"$WORK/backend.conf"
    nginx -e "$WORK/backend.err" -p "$WORK" -c "$WORK/backend.conf" -g "user root;" 2>>"$WORK/backend.err" &
    PIDS+=($!)
    uncap=()
    ((C > 64)) && uncap=(-e '/^pool_max_idle/d')
    sed -e "s|127.0.0.1:18083|127.0.0.1:$PORT|" "${uncap[@]}" "${CONFIG:-$here/proxy/cutover.toml}" >"$WORK/cutover.toml"
    wait_http "http://127.0.0.1:$BACKEND_PORT/" 30
    for i in $(seq 8); do echo "http://127.0.0.1:$PORT/p"; done >"$WORK/urls.txt"
    ;;
  redirect)
    gen_plan "${ROWS:-10000}" a >"$WORK/plan.csv"
    gen_urls "$WORK/plan.csv" 2000 | sed "s|^|http://127.0.0.1:$PORT|" >"$WORK/urls.txt"
    cutover_config "$WORK/plan.csv" "$PORT" "$((PORT + 1))" >"$WORK/cutover.toml"
    ;;
  *) echo "usage: $0 proxy|redirect|nginx" >&2; exit 2 ;;
esac

out=$WORK/callgrind.out
if [[ $mode == nginx ]]; then
  CUTOVER=$(command -v nginx)
  cat >"$WORK/proxy-nginx.conf" <<EOF
worker_processes 1; pid $WORK/proxy-nginx.pid; error_log $WORK/proxy-nginx.err warn;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 100000000;
  client_body_temp_path $WORK/p_body; proxy_temp_path $WORK/p_proxy;
  fastcgi_temp_path $WORK/p_fastcgi; uwsgi_temp_path $WORK/p_uwsgi; scgi_temp_path $WORK/p_scgi;
  upstream sf { server 127.0.0.1:$BACKEND_PORT; keepalive 1024; keepalive_requests 100000000; }
  server { listen 127.0.0.1:$PORT;
    location / { proxy_pass http://sf; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }
EOF
  # One process (no master), so the counted process is the one that serves.
  proxy=("$CUTOVER" -p "$WORK" -c "$WORK/proxy-nginx.conf" -g "daemon off; master_process off; user root;")
else
  proxy=("$CUTOVER" --log warn serve --workers 1 --config "$WORK/cutover.toml")
fi
valgrind --tool=callgrind "${cache[@]}" --callgrind-out-file="$out" "${proxy[@]}" >"$WORK/cutover.log" 2>&1 &
CG_PID=$!
PIDS+=("$CG_PID")
wait_http "http://127.0.0.1:$PORT/" 120
# A returning shopper: send back the cohort cookie cutover sets on the first visit.
# Only the cohort cookie (named in the config): a storefront may set its own cookies too.
name=$(awk -F'"' '/^cookie *=/ { print $2; exit }' "$WORK/cutover.toml" 2>/dev/null || true)
cookie=$(curl -si "$(head -1 "$WORK/urls.txt")" |
  awk -F'[:;] *' -v name="${name:-cutover_cohort}=" 'tolower($1) == "set-cookie" && index($2, name) == 1 { print $2; exit }')
shopper=()
[[ -n $cookie && ${NEW_SHOPPERS:-0} != 1 ]] && shopper=(-H "Cookie: $cookie") # nginx sets none
if [[ ${BROWSER_HEADERS:-0} == 1 ]]; then
  shopper+=(-H 'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"' -H 'sec-ch-ua-mobile: ?0'
    -H 'sec-ch-ua-platform: "Linux"' -H 'Upgrade-Insecure-Requests: 1'
    -H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
    -H 'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8'
    -H 'Sec-Fetch-Site: same-origin' -H 'Sec-Fetch-Mode: navigate' -H 'Sec-Fetch-User: ?1'
    -H 'Sec-Fetch-Dest: document' -H 'Accept-Encoding: gzip, deflate, br, zstd'
    -H 'Accept-Language: en-GB,en;q=0.9')
fi
h2load --h1 -n "$WARMUP" -c "$C" -i "$WORK/urls.txt" "${shopper[@]}" >/dev/null
callgrind_control -z "$CG_PID" >/dev/null
result=$(h2load --h1 -n "$N" -c "$C" -i "$WORK/urls.txt" "${shopper[@]}")
callgrind_control -d "$CG_PID" >/dev/null
grep -E '^requests:|^status codes:' <<<"$result"
sleep 1
dump=$(ls -t "$out".* | head -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "$mode: $((total / N)) instructions per request ($N requests, $C connections, $(basename "$CUTOVER"))"
if [[ ${CACHE:-0} == 1 ]]; then
  # The summary line's events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
  read -r -a ev < <(awk '/^summary:/ { $1 = ""; print }' "$dump")
  echo "$mode: per request, L1d misses $(((ev[4] + ev[5]) / N)), L2 misses $(((ev[7] + ev[8]) / N)) (simulated)"
fi
if [ "${KEEP:-0}" = 1 ]; then
  cp "$dump" /tmp/cutover-callgrind.out
  echo "kept: /tmp/cutover-callgrind.out"
fi
