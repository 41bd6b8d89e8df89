#!/usr/bin/env bash
# TLS termination: cutover vs nginx with the same certificate, one worker each, on loopback.
#
#   benches/tls/run.sh                   # from anywhere; builds the release binary and the client
#
# Measures, in interleaved runs (nginx first on odd runs, cutover first on even ones, so drift on
# a shared machine hits both alike):
#   - new TLS handshakes per second: examples/tls_handshakes.rs, HS_CONCURRENCY connections in
#     parallel, each a TCP connect + full handshake (no resumption, ALPN h2,http/1.1) + close;
#   - HTTP/2 requests per second: h2load (Debian nghttp2-client), H2_CLIENTS connections x
#     H2_STREAMS concurrent streams, GET of a 1 KiB page proxied to a fixed backend;
# and for both the server's CPU time per handshake / per request (utime+stime from
# /proc/<pid>/stat, all threads, before and after each run), which stays meaningful when the load
# generator, not the server, is the limit.
#
# cutover runs `serve --workers 1`; nginx `worker_processes 1`; both pinned to PROXY_CPU. The
# backend (nginx `return 200`) and the clients share LOAD_CPU. Certificate: RSA 2048 by default
# (what most shops serve; the server's signature then dominates a handshake, so the server is
# what is measured), KEY=ec256 for ECDSA P-256.
#
# Knobs (environment): RUNS=5 DURATION=5 WARMUP=2 HS_CONCURRENCY=32 H2_CLIENTS=32 H2_STREAMS=10
#   KEY=rsa2048|ec256 PROXY_CPU=1 LOAD_CPU=0 BUILD=1 (0: use the binaries as they are)
#   CUTOVER=path/to/cutover  HANDSHAKES=path/to/tls_handshakes
# Prints markdown tables; writes nothing into the repository. Every step is bounded by timeout.
set -euo pipefail

RUNS=${RUNS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
HS_CONCURRENCY=${HS_CONCURRENCY:-32}
H2_CLIENTS=${H2_CLIENTS:-32}
H2_STREAMS=${H2_STREAMS:-10}
KEY=${KEY:-rsa2048}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BUILD=${BUILD:-1}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
BACKEND_PORT=18441
NGINX_PORT=18442
CUTOVER_PORT=18443

bench_need nginx h2load openssl taskset curl
NGINX=$(command -v nginx)
bench_cpus
bench_cutover --bin cutover --example tls_handshakes
HANDSHAKES=${HANDSHAKES:-$(dirname "$CUTOVER")/examples/tls_handshakes}
[[ -x $HANDSHAKES ]] || { echo "no $HANDSHAKES; run cargo build --release --example tls_handshakes" >&2; exit 1; }
bench_ports_free $BACKEND_PORT $NGINX_PORT $CUTOVER_PORT
bench_workdir cutover-tls-bench

# One certificate and key for both servers.
case $KEY in
rsa2048) newkey=(-newkey rsa:2048) ;;
ec256) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
*) echo "KEY must be rsa2048 or ec256" >&2; exit 1 ;;
esac
timeout 60 openssl req -x509 "${newkey[@]}" -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
    -days 30 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null

body=$(head -c 1024 /dev/zero | tr '\0' 'x')
subst=(-e "s|@PREFIX@|$tmp|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" -e "s|@CERT@|$tmp/cert.pem|g"
    -e "s|@KEY@|$tmp/key.pem|g" -e "s|@BODY@|$body|")
sed "${subst[@]}" -e "s|@PORT@|$BACKEND_PORT|g" "$here/backend.conf" >"$tmp/backend.conf"
sed "${subst[@]}" -e "s|@PORT@|$NGINX_PORT|g" "$here/nginx.conf" >"$tmp/nginx.conf"
cat >"$tmp/cutover.toml" <<EOF
# Equivalent of nginx.conf: TLS 1.2 + 1.3, ALPN h2 + http/1.1, 100 h2 streams, keep-alive pool.
[[listener]]
address = "127.0.0.1:$CUTOVER_PORT"
[listener.tls]
[[listener.tls.certificates]]
cert = "$tmp/cert.pem"
key = "$tmp/key.pem"

[admin]
address = "off"

[limits]
h2_max_concurrent_streams = 100

[storefront.old]
upstream = "http://127.0.0.1:$BACKEND_PORT"
pool_max_idle = 64

[storefront.new]
upstream = "http://127.0.0.1:$BACKEND_PORT"
pool_max_idle = 64

[split]
from = "old"
to = "new"
new_share = 0

[cohort]
key = "benchmark-only-key"
EOF

taskset -c "$LOAD_CPU" "$NGINX" -e "$tmp/startup.log" -p "$tmp" -c "$tmp/backend.conf" -g "user root;" \
    2>"$tmp/backend.stderr" &
pids+=($!)
taskset -c "$PROXY_CPU" "$NGINX" -e "$tmp/startup.log" -p "$tmp" -c "$tmp/nginx.conf" -g "user root;" \
    2>"$tmp/proxy.stderr" &
nginx_master=$!
pids+=($nginx_master)
CUTOVER_LOG=warn taskset -c "$PROXY_CPU" "$CUTOVER" serve --workers 1 --config "$tmp/cutover.toml" \
    2>"$tmp/cutover.stderr" &
cutover_pid=$!
pids+=($cutover_pid)

bench_wait_port "http://127.0.0.1:$BACKEND_PORT/"
bench_wait_port "https://127.0.0.1:$NGINX_PORT/"
bench_wait_port "https://127.0.0.1:$CUTOVER_PORT/"
nginx_worker=$(pgrep -P "$nginx_master" | head -n1)
[[ -n $nginx_worker ]] || { echo "nginx proxy worker not found" >&2; exit 1; }

# Both must present the same certificate and answer the same way over h2 before anything counts.
want_fp=$(openssl x509 -in "$tmp/cert.pem" -noout -fingerprint -sha256)
for port in $NGINX_PORT $CUTOVER_PORT; do
    fp=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null |
        openssl x509 -noout -fingerprint -sha256)
    [[ $fp == "$want_fp" ]] || { echo "port $port presents another certificate" >&2; exit 1; }
    got=$(curl -sk --http2 -o /dev/null -w '%{http_version} %{http_code} %{size_download}' "https://127.0.0.1:$port/p")
    [[ $got == "2 200 1024" ]] || { echo "port $port answered '$got', want '2 200 1024'" >&2; exit 1; }
done
# A returning shopper: the cohort cookie cutover issued, sent to both (nginx ignores it), so
# cutover does not mint a new cookie on every request.
cookie=$(bench_cohort_cookie "https://127.0.0.1:$CUTOVER_PORT/")

bound=$((DURATION + 60))

# Prints "handshakes_per_s cpu_us_per_handshake".
measure_hs() {
    local port=$1 pid=$2 dur=$3 before after n secs rate errors
    before=$(bench_cpu_ticks "$pid")
    read -r n secs rate errors < <(timeout "$bound" taskset -c "$LOAD_CPU" "$HANDSHAKES" \
        "127.0.0.1:$port" "$dur" "$HS_CONCURRENCY" localhost)
    after=$(bench_cpu_ticks "$pid")
    if ((errors > 0)); then echo "$errors failed handshakes against port $port" >&2; exit 1; fi
    awk -v r="$rate" -v n="$n" -v t="$((after - before))" -v hz="$hz" \
        'BEGIN { printf "%.0f %.1f\n", r, t / hz * 1e6 / n }'
}

# Prints "requests_per_s cpu_us_per_request".
measure_h2() {
    local port=$1 pid=$2 dur=$3 before after out n rate
    before=$(bench_cpu_ticks "$pid")
    out=$(timeout "$bound" taskset -c "$LOAD_CPU" h2load -t1 -c "$H2_CLIENTS" -m "$H2_STREAMS" \
        --warm-up-time=1 -D "$dur" -H "cookie: $cookie" "https://127.0.0.1:$port/p")
    after=$(bench_cpu_ticks "$pid")
    n=$(awk '/^status codes:/ {print $3}' <<<"$out")
    if ! grep -q ' 0 failed, 0 errored, 0 timeout' <<<"$out" || [[ -z $n || $n == 0 ]]; then
        echo "errors in the h2 run against port $port:" >&2
        echo "$out" >&2
        exit 1
    fi
    rate=$(awk '/^finished in/ {print $4}' <<<"$out")
    awk -v r="$rate" -v n="$n" -v t="$((after - before))" -v hz="$hz" \
        'BEGIN { printf "%.0f %.1f\n", r, t / hz * 1e6 / n }'
}

echo "warming up (${WARMUP}s each) ..." >&2
for port_pid in "$NGINX_PORT $nginx_worker" "$CUTOVER_PORT $cutover_pid"; do
    read -r port pid <<<"$port_pid"
    measure_hs "$port" "$pid" "$WARMUP" >/dev/null
    measure_h2 "$port" "$pid" "$WARMUP" >/dev/null
done

declare -a n_hs c_hs n_hs_cpu c_hs_cpu n_rps c_rps n_cpu c_cpu
rows=""
for i in $(seq 1 "$RUNS"); do
    if ((i % 2)); then order="nginx cutover"; else order="cutover nginx"; fi
    for side in $order; do
        if [[ $side == nginx ]]; then port=$NGINX_PORT pid=$nginx_worker; else port=$CUTOVER_PORT pid=$cutover_pid; fi
        read -r hs hs_cpu < <(measure_hs "$port" "$pid" "$DURATION")
        read -r rps cpu < <(measure_h2 "$port" "$pid" "$DURATION")
        if [[ $side == nginx ]]; then
            n_hs+=("$hs"); n_hs_cpu+=("$hs_cpu"); n_rps+=("$rps"); n_cpu+=("$cpu")
        else
            c_hs+=("$hs"); c_hs_cpu+=("$hs_cpu"); c_rps+=("$rps"); c_cpu+=("$cpu")
        fi
        echo "run $i $side: $hs handshakes/s ($hs_cpu us CPU each), $rps h2 req/s ($cpu us CPU each)" >&2
        rows+="| $i | $side | $hs | $hs_cpu | $rps | $cpu |"$'\n'
    done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
m() { median "$@"; }
mn_hs=$(m "${n_hs[@]}"); mc_hs=$(m "${c_hs[@]}"); mn_hs_cpu=$(m "${n_hs_cpu[@]}"); mc_hs_cpu=$(m "${c_hs_cpu[@]}")
mn_rps=$(m "${n_rps[@]}"); mc_rps=$(m "${c_rps[@]}"); mn_cpu=$(m "${n_cpu[@]}"); mc_cpu=$(m "${c_cpu[@]}")

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo
echo "cutover $("$CUTOVER" --version | awk '{print $2}') (rustls, aws-lc-rs) vs $("$NGINX" -v 2>&1 | sed 's|.*/||') ($(openssl version | awk '{print $1, $2}')); certificate $KEY;" \
    "handshakes: $HS_CONCURRENCY parallel, ${DURATION}s; h2: h2load -t1 -c$H2_CLIENTS -m$H2_STREAMS -D$DURATION;" \
    "$(nproc) CPUs ($cpu_model); server on CPU $PROXY_CPU, backend + clients on CPU $LOAD_CPU"
echo
echo "| run | server | handshakes/s | server CPU µs/handshake | h2 req/s | server CPU µs/req |"
echo "|---|---|---:|---:|---:|---:|"
printf '%s' "$rows"
echo
echo "| median | handshakes/s | server CPU µs/handshake | h2 req/s | server CPU µs/req |"
echo "|---|---:|---:|---:|---:|"
echo "| nginx | $mn_hs | $mn_hs_cpu | $mn_rps | $mn_cpu |"
echo "| cutover | $mc_hs | $mc_hs_cpu | $mc_rps | $mc_cpu |"
awk -v a="$mc_hs" -v b="$mn_hs" -v c="$mc_hs_cpu" -v d="$mn_hs_cpu" -v e="$mc_rps" -v f="$mn_rps" -v g="$mc_cpu" -v h="$mn_cpu" \
    'BEGIN { printf "| **cutover / nginx** | **%.2f** | **%.2f** | **%.2f** | **%.2f** |\n", a / b, c / d, e / f, g / h }'
