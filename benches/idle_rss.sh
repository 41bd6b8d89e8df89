#!/usr/bin/env bash
# Idle memory of `cutover serve` with the default worker count: VmRSS (and what it is made of)
# a few seconds after start, with config/demo.toml and with config/cutover.example.toml (their
# ports moved to free ones, their storefronts never contacted).
#
#   cargo build --release && benches/idle_rss.sh
#   CUTOVER=path/to/another/cutover benches/idle_rss.sh    # e.g. a build of main, for a before
#   ENVS="_RJEM_MALLOC_CONF=narenas:1" ...                # extra environment for the process
#
# Prints per config: VmRSS, RssAnon, RssFile, threads, and the largest anonymous mappings from
# /proc/<pid>/smaps (thread stacks show as 8 MiB-ish regions with a few KiB resident; allocator
# arenas as the big ones). Writes nothing into the repository.
source "$(dirname "$0")/redirects/lib.sh"
SETTLE=${SETTLE:-3}

cp -r "$ROOT/config" "$WORK/config"
sed -i -e 's/127.0.0.1:8080/127.0.0.1:18380/; s/127.0.0.1:9901/127.0.0.1:18381/' "$WORK/config/demo.toml"
# The example's storefronts are placeholders off this machine: pointed at a closed local port.
sed -i -e 's/0.0.0.0:8080/127.0.0.1:18382/; s/127.0.0.1:9901/127.0.0.1:18383/' \
  -e 's|^upstream = "[^"]*"|upstream = "http://127.0.0.1:9"|' "$WORK/config/cutover.example.toml"

measure() {
  local name=$1 cfg=$2 port=$3 pid
  env ${ENVS:-} "$CUTOVER" --log warn serve --config "$cfg" >"$WORK/$name.out" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  # The admin listener's readiness: nothing is proxied to a storefront.
  wait_http "http://127.0.0.1:$port/readyz" 60 || { cat "$WORK/$name.out" >&2; return 1; }
  sleep "$SETTLE"
  echo "## $name (pid $pid, $(nproc) CPUs, default workers${ENVS:+, $ENVS})"
  grep -E '^(VmRSS|RssAnon|RssFile|RssShmem|Threads)' "/proc/$pid/status" | tr -s ' \t' ' '
  echo "largest resident mappings (KiB rss, KiB size, what):"
  awk '/^[0-9a-f]+-[0-9a-f]+ / { what = ($6 == "" ? "[anon]" : $6) }
       /^Size:/ { size = $2 } /^Rss:/ { if ($2 > 0) print $2, size, what }' "/proc/$pid/smaps" |
    sort -rn | head -8 | sed 's/^/  /'
  kill "$pid"
  timeout 10 tail --pid="$pid" -f /dev/null || true
}

measure demo "$WORK/config/demo.toml" 18381
measure example "$WORK/config/cutover.example.toml" 18383
