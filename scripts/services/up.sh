#!/usr/bin/env bash
# Start every test service: sshd hosts (sshd.sh) and single-node SLURM (slurm.sh).
# Each writes ${OTWRAP_TEST_SERVICES_DIR:-/tmp/otwrap-services}/<service>/env when up.
# Exits non-zero if any service failed to start.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Install whatever is missing in one apt-get run (the scripts skip it then).
need=()
[[ -x /usr/sbin/sshd ]] && command -v ssh >/dev/null && command -v ssh-keygen >/dev/null ||
    need+=(openssh-server openssh-client)
[[ -x /usr/sbin/slurmctld && -x /usr/sbin/slurmd && -x /usr/sbin/munged ]] &&
    command -v sbatch >/dev/null || need+=(slurmctld slurmd slurm-client munge)
if ((${#need[@]})) && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "up.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -q >&2; then
        export OTWRAP_TEST_APT_UPDATED=1
        apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
            echo "up.sh: apt-get install failed" >&2
    else
        echo "up.sh: apt-get update failed" >&2
    fi
fi

failed=()
for service in sshd slurm; do
    if ! "$HERE/$service.sh" start; then
        echo "up.sh: FAILED to start $service (see above)" >&2
        failed+=("$service")
    fi
done
if ((${#failed[@]})); then
    echo "up.sh: services not started: ${failed[*]}" >&2
    exit 1
fi
echo "up.sh: all services up (${OTWRAP_TEST_SERVICES_DIR:-/tmp/otwrap-services})" >&2
