#!/usr/bin/env bash
# The shopper's cost of shadow comparison (issue 18): the same proxy with [shadow] sample = 0, 0.1
# and 1.0, side by side in one run.
#
#   BUILD=0 benches/shadow/run.sh        # from the repository root; CUTOVER=<release binary>
#
# Three cutover processes (one per sample rate, `serve --workers 1`, all pinned to PROXY_CPU) in
# front of the fixed backend of benches/proxy (nginx `return 200`, 1 KiB of text/html); every
# shopper is on `old` (new_share = 0), so every GET is eligible for a copy, and a copy asks both
# storefronts (the same nginx here) and compares the two pages. The backend and wrk share
# LOAD_CPU. Runs interleave 0%, 10%, 100%, 0%, ... so drift on a shared machine hits all alike.
# Per run: requests/s, p50 and p99 as wrk measured them (the shopper's view), the proxy's CPU
# time per shopper request (copies included: they run in the same process), and what became of
# the copies (cutover_shadow_requests_total{result}, read from each process's admin listener).
#
# Knobs: RUNS=3 DURATION=5s CONNECTIONS=32 WARMUP=2s PROXY_CPU=1 LOAD_CPU=0 BUILD=1
#   CUTOVER=path/to/cutover (default target/release/cutover).
# Prints a markdown table; writes nothing into the repository.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2s}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BUILD=${BUILD:-1}
SAMPLES=(0 0.1 1.0)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
BACKEND_PORT=18081
PORTS=(18091 18092 18093)
ADMIN_PORTS=(18191 18192 18193)

bench_need wrk nginx taskset curl
bench_cpus
bench_cutover
bench_ports_free $BACKEND_PORT "${PORTS[@]}" "${ADMIN_PORTS[@]}"
bench_workdir cutover-bench

body=$(head -c 1024 /dev/zero | tr '\0' 'x')
sed -e "s|@PREFIX@|$tmp|g" -e "s|@BODY@|$body|" "$root/benches/proxy/backend.conf" >"$tmp/backend.conf"
taskset -c "$LOAD_CPU" nginx -e "$tmp/startup.log" -p "$tmp" -c "$tmp/backend.conf" -g "user root;" \
    2>"$tmp/backend.stderr" &
pids+=($!)

# benches/proxy/cutover.toml on another port, every shopper on old, the admin listener on, and
# [shadow] at its sample rate.
cutover_pids=()
for i in 0 1 2; do
    sed -e "s|127.0.0.1:18083|127.0.0.1:${PORTS[$i]}|" \
        -e "s|^address = \"off\"|address = \"127.0.0.1:${ADMIN_PORTS[$i]}\"|" \
        -e "s|^new_share = .*|new_share = 0|" \
        "$root/benches/proxy/cutover.toml" >"$tmp/cutover-$i.toml"
    printf '\n[shadow]\nsample = %s\n' "${SAMPLES[$i]}" >>"$tmp/cutover-$i.toml"
    CUTOVER_LOG=warn taskset -c "$PROXY_CPU" "$CUTOVER" serve --workers 1 \
        --config "$tmp/cutover-$i.toml" 2>"$tmp/cutover-$i.stderr" &
    cutover_pids+=($!)
    pids+=($!)
done

bench_wait_port $BACKEND_PORT
for port in "${PORTS[@]}" "${ADMIN_PORTS[@]}"; do bench_wait_port "$port"; done
for port in "${PORTS[@]}"; do
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/p")
    [[ $got == "200 1024" ]] || { echo "port $port answered '$got', want '200 1024'" >&2; exit 1; }
done
# A returning shopper (on old): the cohort cookie cutover issued.
cookie=$(bench_cohort_cookie "http://127.0.0.1:${PORTS[0]}/")

shadow_results() {
    curl -s "http://127.0.0.1:$1/metrics" |
        awk -F'[{}"= ]+' '/^cutover_shadow_requests_total\{/ { printf "%s %s ", $3, $NF }'
}

# One wrk run; prints "req_per_s cpu_us_per_req p50 p99".
measure() {
    local port=$1 pid=$2 dur=$3 before after out reqs rps
    before=$(bench_cpu_ticks "$pid")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 "-c$CONNECTIONS" --latency -H "Cookie: $cookie" "-d$dur" \
        "http://127.0.0.1:$port/p")
    after=$(bench_cpu_ticks "$pid")
    if awk '/Non-2xx/ || (/Socket errors/ && /(connect|read|write) [1-9]/) {bad = 1}
            END {exit !bad}' <<<"$out"; then
        echo "errors in run against port $port:" >&2
        echo "$out" >&2
        exit 1
    fi
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    awk -v r="$rps" -v n="$reqs" -v t="$((after - before))" -v hz="$hz" \
        -v p50="$(awk '$1 == "50%" {print $2}' <<<"$out")" \
        -v p99="$(awk '$1 == "99%" {print $2}' <<<"$out")" \
        'BEGIN { printf "%.0f %.2f %s %s\n", r, t / hz * 1e6 / n, p50, p99 }'
}

echo "warming up ($WARMUP each) ..." >&2
for i in 0 1 2; do measure "${PORTS[$i]}" "${cutover_pids[$i]}" "$WARMUP" >/dev/null; done

rows=""
for run in $(seq 1 "$RUNS"); do
    for i in 0 1 2; do
        before=$(shadow_results "${ADMIN_PORTS[$i]}")
        read -r rps cpu p50 p99 < <(measure "${PORTS[$i]}" "${cutover_pids[$i]}" "$DURATION")
        after=$(shadow_results "${ADMIN_PORTS[$i]}")
        # Copies of this run by result: the counters' growth across it.
        copies=$(awk -v b="$before" -v a="$after" 'BEGIN {
            nb = split(b, x, " "); for (k = 1; k < nb; k += 2) old[x[k]] = x[k + 1];
            na = split(a, y, " "); for (k = 1; k < na; k += 2)
                if (y[k + 1] - old[y[k]] > 0) printf "%s%s %d", (s++ ? ", " : ""), y[k], y[k + 1] - old[y[k]];
            if (!s) printf "none" }')
        pct=$(awk -v s="${SAMPLES[$i]}" 'BEGIN { printf "%g%%", s * 100 }')
        echo "run $run sample $pct: $rps req/s, p99 $p99, $cpu us CPU/req, copies: $copies" >&2
        rows+="| $run | $pct | $rps | $p50 | $p99 | $cpu | $copies |"$'\n'
    done
done

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo
echo "cutover $("$CUTOVER" --version | awk '{print $2}'), wrk -t1 -c$CONNECTIONS -d$DURATION, a returning shopper on old;" \
    "$(nproc) CPUs ($cpu_model); proxies on CPU $PROXY_CPU, backend + wrk on CPU $LOAD_CPU"
echo
echo "| run | shadow sample | req/s | p50 | p99 | proxy CPU µs/req | copies (result count) |"
echo "|---|---:|---:|---:|---:|---:|---|"
printf '%s' "$rows"
