#!/usr/bin/env bash
# Stop every test service started by up.sh. Idempotent.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
status=0
for service in slurm sshd; do
    "$HERE/$service.sh" stop || { echo "down.sh: stopping $service failed" >&2; status=1; }
done
exit "$status"
