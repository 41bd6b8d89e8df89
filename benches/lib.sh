# Shared by benches/{proxy,shadow,console,tls}/run.sh: the tools a run needs, the binary under
# test, free ports, a work folder whose processes are stopped on exit, waiting for a server.
# Source it after the script's knobs are set. Sets `root` (the repository), and with
# `bench_workdir`, `tmp` (the work folder) and `pids` (processes stopped on exit).

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# bench_need TOOL...: installs, from Debian's packages, the ones not on the machine.
bench_need() {
    local tool missing=() pkg
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 && continue
        case $tool in
        taskset) pkg=util-linux ;;
        h2load) pkg=nghttp2-client ;;
        *) pkg=$tool ;;
        esac
        missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    echo "installing ${missing[*]} ..." >&2
    local sudo_cmd=""
    [[ $(id -u) == 0 ]] || sudo_cmd=sudo
    timeout 300 $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 $sudo_cmd apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

# bench_cpus: on a 1-CPU machine the proxy and the load share CPU 0.
bench_cpus() {
    if (($(nproc) < 2)); then PROXY_CPU=0; LOAD_CPU=0; fi
}

# bench_cutover [CARGO ARGS...]: sets CUTOVER to the binary under test. With BUILD=1 and no
# CUTOVER given, builds it first (`cargo build --release --quiet CARGO ARGS`).
bench_cutover() {
    if [[ ${BUILD:-1} == 1 && -z ${CUTOVER:-} ]]; then
        (cd "$root" && timeout 3600 cargo build --release --quiet "$@")
    fi
    CUTOVER=${CUTOVER:-${CARGO_TARGET_DIR:-$root/target}/release/cutover}
    [[ -x $CUTOVER ]] || { echo "no $CUTOVER; run cargo build --release" >&2; exit 1; }
}

# bench_ports_free PORT...: stops the run if anything listens on one of them.
bench_ports_free() {
    local port
    for port in "$@"; do
        if ss -Hltn "sport = :$port" | grep -q .; then
            echo "port $port is in use; stop whatever holds it" >&2
            exit 1
        fi
    done
}

# bench_workdir NAME: a fresh folder in /tmp as `tmp`; every pid added to `pids` is stopped, and
# the folder removed, when the script ends however it ends.
bench_workdir() {
    tmp=$(mktemp -d "/tmp/$1.XXXXXX")
    pids=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}

# bench_wait_port PORT|URL: waits (10 s at most) until something answers there over HTTP(S).
bench_wait_port() {
    local url=$1 i
    [[ $url == *://* ]] || url="http://127.0.0.1:$url/"
    for i in $(seq 1 200); do
        if curl -sk -o /dev/null "$url"; then return 0; fi
        sleep 0.05
    done
    echo "nothing answers at $url" >&2
    cat "$tmp"/*.stderr >&2 2>/dev/null || true
    return 1
}

# bench_cohort_cookie URL: the `cutover_cohort=...` pair a cutover at URL sets for a new shopper,
# for the load to send as a returning shopper (a valid MAC: no cookie minted per request).
bench_cohort_cookie() {
    local cookie
    cookie=$(curl -sk -D - -o /dev/null "$1" |
        sed -n 's/^[Ss]et-[Cc]ookie: \(cutover_cohort=[^;]*\).*/\1/p' | tr -d '\r')
    [[ -n $cookie ]] || { echo "cutover at $1 issued no cohort cookie" >&2; exit 1; }
    echo "$cookie"
}

# bench_cpu_ticks PID: user + system CPU of the process (all threads), in clock ticks (`hz`).
hz=$(getconf CLK_TCK)
bench_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
