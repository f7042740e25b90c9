#!/usr/bin/env bash
# The full test suite, exactly as CI runs it (.ci/run calls this script): installs the test dependencies
# and generates the PyTorch reference models (scripts/setup-test-deps.sh, idempotent), then checks
# formatting, lints with clippy (-D warnings) and runs every test, including the ONNX conformance suite
# against its committed baseline.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { echo; echo "==> $*"; }

step "test dependencies"
bash scripts/setup-test-deps.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy -p sovc-runtime --target aarch64-apple-darwin (the macOS-only metal device)"
CC_aarch64_apple_darwin=clang-19 AR_aarch64_apple_darwin=ar \
  cargo clippy -p sovc-runtime --target aarch64-apple-darwin -- -D warnings

step "cargo test"
cargo test --workspace
