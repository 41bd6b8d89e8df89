#!/usr/bin/env bash
# cutover vs nginx as a reverse proxy in front of one fixed backend, on loopback.
#
#   benches/proxy/run.sh                 # from the repository root; builds the release binary
#
# Each proxy runs with ONE worker (cutover --workers 1, nginx worker_processes 1) pinned to the same
# CPU; the backend (nginx `return 200`, 1 KiB body) and the load generator (wrk) share the other
# CPU. Runs are interleaved A B A B ... so drift on a shared machine hits both sides alike.
# Reported per run: requests/s, and the proxy's CPU time per request (utime+stime from
# /proc/<pid>/stat, all threads, before and after the run, divided by the requests wrk counted).
#
# Knobs (environment): RUNS=5 DURATION=5s CONNECTIONS=32 WARMUP=2s PROXY_CPU=1 LOAD_CPU=0
#   COOKIE=1   send a valid cohort cookie (a returning shopper); COOKIE=0: every request is a new
#              shopper, so cutover also mints a Set-Cookie each time (nginx sets none).
#   BUILD=1    run `cargo build --release` first (0: use the binary as it is).
#   CUTOVER=path/to/cutover   another build to measure (default target/release/cutover).
#   CONFIG=path/to/cutover.toml   another config (inventory: cutover-inventory.toml, the same with
#              [inventory] on, to compare the request path with and without it).
# Prints a markdown table; writes nothing into the repository.
set -euo pipefail

RUNS=${RUNS:-5}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2s}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
COOKIE=${COOKIE:-1}
BUILD=${BUILD:-1}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
BACKEND_PORT=18081
NGINX_PORT=18082
CUTOVER_PORT=18083

bench_need wrk nginx taskset curl
NGINX=$(command -v nginx)
bench_cpus
bench_cutover
bench_ports_free $BACKEND_PORT $NGINX_PORT $CUTOVER_PORT
bench_workdir cutover-bench

body=$(head -c 1024 /dev/zero | tr '\0' 'x')
sed -e "s|@PREFIX@|$tmp|g" -e "s|@BODY@|$body|" "$here/backend.conf" >"$tmp/backend.conf"
sed -e "s|@PREFIX@|$tmp|g" "$here/nginx.conf" >"$tmp/nginx.conf"

# nginx runs as root here only because the bench runs as root; `user` would otherwise warn.
taskset -c "$LOAD_CPU" "$NGINX" -e "$tmp/startup.log" -p "$tmp" -c "$tmp/backend.conf" -g "user root;" \
    2>"$tmp/backend.stderr" &
pids+=($!)
taskset -c "$PROXY_CPU" "$NGINX" -e "$tmp/startup.log" -p "$tmp" -c "$tmp/nginx.conf" -g "user root;" \
    2>"$tmp/proxy.stderr" &
nginx_master=$!
pids+=($nginx_master)
CUTOVER_LOG=warn taskset -c "$PROXY_CPU" "$CUTOVER" serve --workers 1 \
    --config "${CONFIG:-$here/cutover.toml}" 2>"$tmp/cutover.stderr" &
cutover_pid=$!
pids+=($cutover_pid)

bench_wait_port $BACKEND_PORT
bench_wait_port $NGINX_PORT
bench_wait_port $CUTOVER_PORT
nginx_worker=$(pgrep -P "$nginx_master" | head -n1)
[[ -n $nginx_worker ]] || { echo "nginx proxy worker not found" >&2; exit 1; }

# Both proxies must answer the same way before anything is measured.
for port in $NGINX_PORT $CUTOVER_PORT; do
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/p")
    [[ $got == "200 1024" ]] || { echo "port $port answered '$got', want '200 1024'" >&2; exit 1; }
done

wrk_args=(-t1 "-c$CONNECTIONS" --latency)
if [[ $COOKIE == 1 ]]; then
    # A returning shopper: the cohort cookie cutover itself issued (valid MAC), sent to both.
    cookie=$(bench_cohort_cookie "http://127.0.0.1:$CUTOVER_PORT/")
    wrk_args+=(-H "Cookie: $cookie")
fi


# One wrk run against a port; prints
# "req_per_s requests cpu_us_per_req cpu_percent p50 p99 timeouts".
measure() {
    local port=$1 pid=$2 dur=$3 before after out reqs rps secs p50 p99 timeouts
    before=$(bench_cpu_ticks "$pid")
    out=$(taskset -c "$LOAD_CPU" wrk "${wrk_args[@]}" "-d$dur" "http://127.0.0.1:$port/p")
    after=$(bench_cpu_ticks "$pid")
    # Wrong answers or broken connections fail the benchmark; wrk's timeouts (a request slower
    # than 2 s, which happens when other work starves the machine) are counted and shown.
    if awk '/Non-2xx/ || (/Socket errors/ && /(connect|read|write) [1-9]/) {bad = 1}
            END {exit !bad}' <<<"$out"; then
        echo "errors in run against port $port:" >&2
        echo "$out" >&2
        exit 1
    fi
    timeouts=$(awk '/Socket errors/ {print $NF; exit}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    secs=$(awk '/requests in/ {sub(/s,$/, "", $4); print $4}' <<<"$out")
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    awk -v r="$rps" -v n="$reqs" -v t="$((after - before))" -v hz="$hz" -v s="$secs" \
        -v p50="$p50" -v p99="$p99" -v to="${timeouts:-0}" \
        'BEGIN { printf "%.0f %d %.2f %.0f %s %s %d\n", r, n, t / hz * 1e6 / n, t / hz / s * 100, p50, p99, to }'
}

echo "warming up ($WARMUP each) ..." >&2
measure $NGINX_PORT "$nginx_worker" "$WARMUP" >/dev/null
measure $CUTOVER_PORT "$cutover_pid" "$WARMUP" >/dev/null

declare -a n_rps c_rps n_cpu c_cpu n_util c_util
rows=""
for i in $(seq 1 "$RUNS"); do
    for side in nginx cutover; do
        if [[ $side == nginx ]]; then
            read -r rps reqs cpu util p50 p99 timeouts < <(measure $NGINX_PORT "$nginx_worker" "$DURATION")
            n_rps+=("$rps"); n_cpu+=("$cpu"); n_util+=("$util")
        else
            read -r rps reqs cpu util p50 p99 timeouts < <(measure $CUTOVER_PORT "$cutover_pid" "$DURATION")
            c_rps+=("$rps"); c_cpu+=("$cpu"); c_util+=("$util")
        fi
        echo "run $i $side: $rps req/s, $cpu us CPU/req" >&2
        rows+="| $i | $side | $rps | $cpu | $util | $p50 | $p99 | $timeouts |"$'\n'
    done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mn_rps=$(median "${n_rps[@]}"); mc_rps=$(median "${c_rps[@]}")
mn_cpu=$(median "${n_cpu[@]}"); mc_cpu=$(median "${c_cpu[@]}")

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo
echo "cutover $("$CUTOVER" --version | awk '{print $2}') vs $("$NGINX" -v 2>&1 | sed 's|.*/||'), wrk -t1 -c$CONNECTIONS -d$DURATION, cookie=$COOKIE;" \
    "$(nproc) CPUs ($cpu_model); proxy on CPU $PROXY_CPU, backend + wrk on CPU $LOAD_CPU"
echo
echo "| run | proxy | req/s | proxy CPU µs/req | proxy CPU % | p50 | p99 | timeouts |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
printf '%s' "$rows"
echo
echo "| median | req/s | proxy CPU µs/req |"
echo "|---|---:|---:|"
echo "| nginx | $mn_rps | $mn_cpu |"
echo "| cutover | $mc_rps | $mc_cpu |"
awk -v a="$mc_rps" -v b="$mn_rps" -v c="$mc_cpu" -v d="$mn_cpu" \
    'BEGIN { printf "| **cutover / nginx** | **%.2f** | **%.2f** |\n", a / b, c / d }'
mn_util=$(printf '%.0f' "$(median "${n_util[@]}")")
mc_util=$(printf '%.0f' "$(median "${c_util[@]}")")
if (( mn_util < 80 || mc_util < 80 )); then
    echo
    echo "Note: the proxies used only ${mn_util}% (nginx) and ${mc_util}% (cutover) of their CPU (median):" \
        "they were not the bottleneck, so req/s reflect the load on the machine; compare CPU µs/req."
fi
