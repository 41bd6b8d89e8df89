#!/usr/bin/env bash
# Installs the validators tests/deploy_files.rs runs on the files under deploy/ (each fails the
# test when missing, rather than being skipped):
#   promtool              Debian `prometheus`      prometheus.yml files, alerts, PrometheusRule
#   systemd-analyze       Debian `systemd`         deploy/systemd/cutover.service (verify)
#   docker-compose        Debian `docker-compose`  deploy/compose/*.yaml (`config`, no engine needed)
#   kubernetes-validate   PyPI                     deploy/kubernetes/ manifests (strict schemas)
# Idempotent; run before `cargo test --test deploy_files` (tests/run should call it).
set -euo pipefail

apt_need=()
command -v promtool >/dev/null 2>&1 || apt_need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || apt_need+=(systemd)
command -v docker-compose >/dev/null 2>&1 || apt_need+=(docker-compose)
if [ ${#apt_need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  echo "deploy/validators.sh: installing ${apt_need[*]} (Debian packages)"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${apt_need[@]}" >/dev/null
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "deploy/validators.sh: installing kubernetes-validate (PyPI; ships the Kubernetes schemas)"
  python3 -m pip install -q 'kubernetes-validate==1.37.0'
fi
