#!/usr/bin/env bash
# Load + validate + build time, resident memory per entry beyond the URL bytes, and lookup cost
# for 10^4, 10^5 and 10^6 rows: examples/redirects_load.rs, each size in its own process,
# REPEAT runs (default 3), median of each column.
#
#   cargo build --release --example redirects_load && benches/redirects/load.sh
source "$(dirname "$0")/lib.sh"
REPEAT=${REPEAT:-3}
BIN=$ROOT/target/release/examples/redirects_load
[ -x "$BIN" ] || { echo "build first: cargo build --release --example redirects_load" >&2; exit 2; }
quiet_machine
for n in ${SIZES:-10000 100000 1000000}; do
  for r in $(seq "$REPEAT"); do
    timeout 300 "$BIN" "$n" 2>/dev/null | awk 'NR == 2'
  done >"$WORK/runs-$n"
done
echo "# every run (rows load_s cpu_s url_bytes/row rss_delta/row rss_beyond_urls/row self_overhead/row lookup_ns):"
cat "$WORK"/runs-* | sed 's/^/#   /'
printf "%-9s %-8s %-7s %-14s %-20s %-18s %s\n" rows load_s cpu_s url_bytes/row rss_beyond_urls/row self_overhead/row lookup_ns
for n in ${SIZES:-10000 100000 1000000}; do
  col() { awk -v c="$1" '{ print $c }' "$WORK/runs-$n" | median; }
  printf "%-9s %-8s %-7s %-14s %-20s %-18s %s\n" "$n" "$(col 2)" "$(col 3)" "$(col 4)" "$(col 6)" "$(col 7)" "$(col 8)"
done
