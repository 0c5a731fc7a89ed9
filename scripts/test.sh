#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls exactly this).
# Installs and starts what the tests need, runs them, stops what it started.
# Today the tests need only the Rust toolchain: the engine, replay, gen and demo
# run without services. Later stages (Kafka, SMTP, Prometheus) add their set-up here.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain: $(cargo --version)"
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
echo "== all tests passed"
