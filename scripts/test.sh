#!/usr/bin/env bash
# The test command: installs what the tests need, builds once, runs every test.
# The README and CI (.ci/run) both call exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

export CARGO_TERM_COLOR=never
# Each step's wall time goes to stderr, so a slow step shows in the log.
step() {
    local start=$SECONDS
    "$@"
    echo "test.sh: $* took $((SECONDS - start)) s" >&2
}
step cargo fmt --check
step python3 scripts/shape_check.py
step cargo build --release --all-targets --locked
step cargo clippy --release --all-targets --locked -- -D warnings
step cargo test --release --doc --locked
step cargo test --release --all-targets --locked -- --skip containers::
# The container tests (the image, a Compose cluster crashed and cut off) are
# long and share the machine's one Docker engine: their own group, in turn.
step cargo test --release --test it --locked containers:: -- --test-threads=1
