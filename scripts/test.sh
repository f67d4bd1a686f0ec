#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, behaviour, UI and doc tests.
# Tests that need a service (sshd, SLURM) provision it through the scripts in
# this folder when they can, and are skipped with a message otherwise (they
# fail instead when CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

# Services (sshd hosts, single-node SLURM): tests find them through the env
# files under $OTWRAP_TEST_SERVICES_DIR. OTWRAP_TEST_NO_SERVICES=1 skips provisioning;
# OTWRAP_TEST_KEEP_SERVICES=1 leaves them running after the tests.
export OTWRAP_TEST_SERVICES_DIR="${OTWRAP_TEST_SERVICES_DIR:-/tmp/otwrap-services}"
if [[ "${OTWRAP_TEST_NO_SERVICES:-}" == 1 ]]; then
    echo "== services: not provisioned (OTWRAP_TEST_NO_SERVICES=1)"
elif [[ "$(id -u)" == 0 ]] && { command -v apt-get >/dev/null ||
    { [[ -x /usr/sbin/sshd && -x /usr/sbin/slurmctld && -x /usr/sbin/munged ]]; }; }; then
    echo "== services: scripts/services/up.sh ($OTWRAP_TEST_SERVICES_DIR)"
    if [[ "${OTWRAP_TEST_KEEP_SERVICES:-}" != 1 ]]; then
        trap 'echo "== services: scripts/services/down.sh"; scripts/services/down.sh || true' EXIT
    fi
    if ! scripts/services/up.sh; then
        if [[ "${CI:-}" == true ]]; then
            echo "error: provisioning the test services failed (CI=true)" >&2
            exit 1
        fi
        echo "warning: provisioning the test services failed; the tests that need them are skipped" >&2
    fi
else
    echo "== services: not provisioned (needs root and apt-get); the tests that need them are skipped"
fi

echo "== cargo test"
cargo test --workspace
