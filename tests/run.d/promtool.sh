#!/usr/bin/env bash
# Hook for tests/run: the metrics/dashboard/alerts gate against the real `cutover demo` and a real
# Prometheus (installs Debian's prometheus package if missing; builds the binary unless CUTOVER_BIN
# is set). Bounded by GATE_TIMEOUT (default 120 s); cleans up after itself.
set -euo pipefail
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/promtool/check.sh" --demo
