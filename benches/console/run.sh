#!/usr/bin/env bash
# The proxy's cost of an open console: wrk against the proxy with no console open, then with the
# console open in headless Chromium (the real page, polling the admin listener every 2 s), runs
# interleaved none, console, none, console ... on loopback.
#
#   benches/console/run.sh            # from the repository root; BUILD=0 to skip cargo build
#
# cutover runs with one worker (`serve --workers 1`) pinned to PROXY_CPU, in front of a fixed
# backend (nginx `return 200`, 1 KiB, benches/proxy/backend.conf); the backend, wrk and Chromium
# share LOAD_CPU. Reported per run: requests/s, p50/p99, and the proxy's CPU time per request
# (utime+stime of the whole process, admin listener and sampler included, from /proc/<pid>/stat,
# divided by the requests wrk counted): what the console costs the process shows there.
# Then, still in the same mode, IDLE seconds without load: the proxy's own CPU per second (ns
# precision from schedstat), i.e. the sampler alone vs the sampler plus an open page's polls.
# Knobs: RUNS=3 DURATION=5s IDLE=6 CONNECTIONS=32 PROXY_CPU=1 LOAD_CPU=0 CUTOVER=path BUILD=1
# Needs wrk, nginx, taskset, curl, python3 with Playwright and /usr/bin/chromium (tests/run installs
# the last two). Prints a markdown table; writes nothing into the repository.
set -euo pipefail

RUNS=${RUNS:-3}
IDLE=${IDLE:-6}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BUILD=${BUILD:-1}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
BACKEND_PORT=18091
PROXY_PORT=18093
ADMIN_PORT=18094

bench_need wrk nginx taskset curl
bench_cutover --bin cutover
bench_ports_free $BACKEND_PORT $PROXY_PORT $ADMIN_PORT
bench_workdir cutover-console-bench

body=$(head -c 1024 /dev/zero | tr '\0' 'x')
sed -e "s|@PREFIX@|$tmp|g" -e "s|@BODY@|$body|" -e "s|127.0.0.1:18081|127.0.0.1:$BACKEND_PORT|" \
    "$root/benches/proxy/backend.conf" >"$tmp/backend.conf"
# benches/proxy/cutover.toml with the admin listener on (the console lives there).
sed -e "s|127.0.0.1:18081|127.0.0.1:$BACKEND_PORT|" -e "s|127.0.0.1:18083|127.0.0.1:$PROXY_PORT|" \
    -e "s|^address = \"off\"|address = \"127.0.0.1:$ADMIN_PORT\"|" \
    "$root/benches/proxy/cutover.toml" >"$tmp/cutover.toml"

taskset -c "$LOAD_CPU" nginx -e "$tmp/startup.log" -p "$tmp" -c "$tmp/backend.conf" -g "user root;" \
    2>"$tmp/backend.stderr" &
pids+=($!)
CUTOVER_LOG=warn taskset -c "$PROXY_CPU" "$CUTOVER" serve --workers 1 --config "$tmp/cutover.toml" \
    2>"$tmp/cutover.stderr" &
proxy_pid=$!
pids+=($proxy_pid)
for port in $BACKEND_PORT $PROXY_PORT $ADMIN_PORT; do bench_wait_port "$port"; done
got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$PROXY_PORT/p")
[[ $got == "200 1024" ]] || { echo "the proxy answered '$got', want '200 1024'" >&2; exit 1; }
cookie=$(bench_cohort_cookie "http://127.0.0.1:$PROXY_PORT/")

# CPU time of every thread of the proxy in ns (/proc/<pid>/task/*/schedstat, first field): finer
# than the 10 ms ticks of /proc/<pid>/stat, which the idle measurement below needs.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f\n", s}'; }
# Prints "req_per_s cpu_us_per_req p50 p99".
measure() {
    local before after out reqs rps
    before=$(cpu_ns "$proxy_pid")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 "-c$CONNECTIONS" --latency -H "Cookie: $cookie" "-d$1" \
        "http://127.0.0.1:$PROXY_PORT/p")
    after=$(cpu_ns "$proxy_pid")
    if grep -q 'Non-2xx' <<<"$out"; then echo "$out" >&2; exit 1; fi
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    awk -v r="$rps" -v n="$reqs" -v t="$((after - before))" \
        -v p50="$(awk '$1 == "50%" {print $2}' <<<"$out")" -v p99="$(awk '$1 == "99%" {print $2}' <<<"$out")" \
        'BEGIN { printf "%.0f %.2f %s %s\n", r, t / 1e3 / n, p50, p99 }'
}

measure 2s >/dev/null # warm-up
rows=""
declare -a none_cpu console_cpu none_rps console_rps none_idle console_idle
for i in $(seq 1 "$RUNS"); do
    for mode in none console; do
        polls=-
        if [[ $mode == console ]]; then
            coproc BROWSER { taskset -c "$LOAD_CPU" python3 "$here/open.py" "http://127.0.0.1:$ADMIN_PORT/"; }
            browser_pid=$BROWSER_PID
            read -r line <&"${BROWSER[0]}"
            [[ $line == open ]] || { echo "the console did not open: $line" >&2; exit 1; }
        fi
        read -r rps cpu p50 p99 < <(measure "$DURATION")
        # No load: what the proxy spends per second by itself (sampler, and the page's polls).
        before=$(cpu_ns "$proxy_pid")
        sleep "$IDLE" # the measurement interval, not a wait for an event
        idle=$(awk -v t="$(($(cpu_ns "$proxy_pid") - before))" -v s="$IDLE" 'BEGIN { printf "%.2f", t / 1e6 / s }')
        if [[ $mode == console ]]; then
            echo stop >&"${BROWSER[1]}"
            read -r polls <&"${BROWSER[0]}"
            wait "$browser_pid" || true
            console_cpu+=("$cpu"); console_rps+=("$rps"); console_idle+=("$idle")
        else
            none_cpu+=("$cpu"); none_rps+=("$rps"); none_idle+=("$idle")
        fi
        echo "run $i $mode: $rps req/s, $cpu us CPU/req, idle $idle ms CPU/s, console polls $polls" >&2
        rows+="| $i | $mode | $rps | $cpu | $p50 | $p99 | $idle | $polls |"$'\n'
    done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "cutover $("$CUTOVER" --version | awk '{print $2}'), wrk -t1 -c$CONNECTIONS -d$DURATION; proxy on CPU $PROXY_CPU, backend + wrk + Chromium on CPU $LOAD_CPU"
echo
echo "| run | console | req/s | proxy CPU µs/req | p50 | p99 | idle proxy CPU ms/s | page polls (wrk + idle) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
printf '%s' "$rows"
echo
echo "| median | req/s | proxy CPU µs/req | idle proxy CPU ms/s |"
echo "|---|---:|---:|---:|"
echo "| none | $(median "${none_rps[@]}") | $(median "${none_cpu[@]}") | $(median "${none_idle[@]}") |"
echo "| console open | $(median "${console_rps[@]}") | $(median "${console_cpu[@]}") | $(median "${console_idle[@]}") |"
