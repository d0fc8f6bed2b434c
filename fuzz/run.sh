#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time on the committed seeds.
#
#   fuzz/run.sh                 # 60 s per target
#   FUZZ_SECONDS=600 fuzz/run.sh frame request
#
# Targets: frame (the connection's frame reader), request (request header
# parsing and every served API's body decoder), batch_validate (the produce
# path's record batch checks), recovery_scan (the crash-recovery scanner).
# A crash leaves its input in fuzz/artifacts/<target>/; turn it into a
# regression test (tests/serve.rs bad-input cases, or the target crate's
# tests) before fixing it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz passes nightly-only flags (-Zsanitizer); the machine has one
# stable toolchain, which accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(frame request batch_validate recovery_scan)
for t in "${targets[@]}"; do
    echo "==> fuzzing $t for ${FUZZ_SECONDS:-60}s"
    mkdir -p "corpus/$t"
    cargo fuzz run "$t" "corpus/$t" -- -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=4096
done
