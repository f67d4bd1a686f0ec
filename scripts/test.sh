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
echo "== cargo test"
cargo test --workspace
