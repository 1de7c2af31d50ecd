#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need. Idempotent: each
# step checks first and does nothing when its part is already in place, so
# `make test` can call it on every run.
#
#   scripts/deps.sh                everything (make deps)
#   scripts/deps.sh --python-only  only .venv/ (make deps-python: the offline
#                                  manifest checks, e.g. in the kind workflow)
set -euo pipefail
cd "$(dirname "$0")/.."
python_only=false
if [ "${1:-}" = --python-only ]; then python_only=true; fi

# System packages (../shared/TOOLBOX.md). --no-install-recommends matters:
# wireguard-tools would otherwise pull in a kernel image and systemd. g++
# builds libFuzzer (libfuzzer-sys, the fuzz crate). prometheus brings
# promtool, which checks and unit-tests the chart's alerts (no server runs).
apt_packages=(
  clang llvm libbpf-dev bpftool g++
  iptables ipset iproute2 wireguard-tools conntrack
  iputils-ping netcat-openbsd wrk iperf3
  prometheus
  python3-venv
)
if $python_only; then apt_packages=(python3-venv); fi
missing=()
for package in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  # Through env: sudo resets the environment, and a variable after an
  # empty $sudo would be taken for the command.
  $sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The userspace WireGuard daemon the dataplane tests and the demo run
# (there is no kernel WireGuard module on these machines).
if ! $python_only && ! command -v boringtun-cli >/dev/null 2>&1; then
  echo "deps: installing boringtun-cli"
  cargo install --locked --quiet boringtun-cli@0.7.1
fi

# Python tools in .venv/, reinstalled only when scripts/requirements.txt changes.
venv="${MESHGUARD_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "deps: creating $venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum scripts/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "deps: installing Python tools into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements.txt
  echo "$wanted" > "$stamp"
fi
