#!/usr/bin/env bash
# Resident memory of cutover with a large redirect plan: after startup, at the peak of a reload
# (the next table is built beside the one serving, in the memory of the table the previous
# reload retired), and once reloads stop and that spare memory is released
# (redirects::spare::KEEP, 10 s). Sizes the memory limit of a deployment
# (deploy/kubernetes/deployment.yaml).
#
#   cargo build --release && benches/redirects/memory.sh
#   env: ROWS (1000000) RELOADS (3) WAIT s per reload (4) QUIET s after the last (15)
source "$(dirname "$0")/lib.sh"
need curl
ROWS=${ROWS:-1000000}; RELOADS=${RELOADS:-3}; WAIT=${WAIT:-4}
CPORT=18581; APORT=18591

gen_plan "$ROWS" a >"$WORK/version-a.csv"
gen_plan "$ROWS" b >"$WORK/version-b.csv"
ln "$WORK/version-a.csv" "$WORK/plan.csv"
cutover_config "$WORK/plan.csv" "$CPORT" "$APORT" >"$WORK/cutover.toml"
start_cutover "$WORK/cutover.toml" 0
wait_http "http://127.0.0.1:$CPORT/" 120
memory() { awk '/^VmRSS|^VmHWM/ { printf "%s %d MB  ", $1, $2 / 1024 }' "/proc/$CUTOVER_PID/status"; echo "($1)"; }
memory "after startup, $ROWS rows"
v=a
for _ in $(seq "$RELOADS"); do
  if [ $v = a ]; then v=b; else v=a; fi
  ln -f "$WORK/version-$v.csv" "$WORK/plan.tmp"
  mv -f "$WORK/plan.tmp" "$WORK/plan.csv"
  sleep "$WAIT"
  memory "$WAIT s after swapping in version $v"
done
sleep "${QUIET:-15}"
memory "${QUIET:-15} s later, no reload since"
