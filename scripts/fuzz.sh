#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time (default 30 s each):
#
#   scripts/fuzz.sh            # every target, 30 s each
#   scripts/fuzz.sh 300        # every target, 5 minutes each
#   scripts/fuzz.sh 60 template sample_csv
#
# Installs cargo-fuzz (from crates.io) when it is missing. libFuzzer and the
# sanitizer flags need a nightly compiler; on a stable toolchain the script
# sets RUSTC_BOOTSTRAP=1, which lets stable rustc accept them (the address
# sanitizer runtime ships with the stable x86_64 Linux toolchain).
# FUZZ_SANITIZER=none skips the sanitizer (faster; panics and hangs are
# still caught). FUZZ_JOBS runs that many fuzzing processes per target.
#
# Each target starts from the committed seeds (fuzz/seeds/<target>) and
# grows a working corpus in fuzz/corpus/<target> (not committed). A crash,
# timeout or out-of-memory input is saved under fuzz/artifacts/<target>/ and
# the script exits non-zero; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: scripts/fuzz.sh [seconds per target] [target...]" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi

sanitizer="${FUZZ_SANITIZER:-address}"
jobs="${FUZZ_JOBS:-1}"
failed=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    seeds="fuzz/seeds/$target"
    mkdir -p "$corpus" "$seeds"
    echo "== fuzz $target for ${seconds}s (sanitizer: $sanitizer)"
    # -rss_limit_mb: a decoder that allocates what a corrupt length says
    # fails here; -timeout: one input taking seconds is a hang.
    parallel=()
    if [[ "$jobs" -gt 1 ]]; then
        parallel=(-jobs="$jobs" -workers="$jobs")
    fi
    if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -malloc_limit_mb=512 -timeout=10 \
        -print_final_stats=1 "${parallel[@]}"; then
        failed+=("$target")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzzing found problems in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "== every target ran ${seconds}s without a crash, hang or memory blow-up"
