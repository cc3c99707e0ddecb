#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (a Python venv with moto,
# the SAM tools and cargo-lambda; DynamoDB Local from npm; MiniStack), starts the three local
# AWS engines on free loopback ports (tests/engines.sh), then runs formatting, lints, every
# test, the infra checks and the Lambda checks, and prints how long each phase took.
# Usage: bash tests/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Phase times, printed as a table at the end (README, "The two commands").
phase_rows=()
phase_start=$(date +%s)
run_start=$phase_start
phase() {
  local now
  now=$(date +%s)
  phase_rows+=("$1|$((now - phase_start))")
  phase_start=$now
}

venv="$root/target/venv"
# moto (the local AWS), the SAM CLI, cfn-lint and the SAM translator (offline template
# checks), cargo-lambda (builds and runs the real function binaries; it brings zig).
requirements="tests/requirements.txt"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  echo "== installing $(tr '\n' ' ' <"$requirements")into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
export PATH="$venv/bin:$PATH"
# checkov (the infra check runs it on the translated template) in its own venv: its pins do
# not sit with the SAM tools'.
checkov_requirement="checkov==3.3.30"
if [ "$(cat "$root/target/venv-checkov/.requirement" 2>/dev/null)" != "$checkov_requirement" ]; then
  echo "== installing $checkov_requirement into target/venv-checkov"
  python3 -m venv "$root/target/venv-checkov"
  "$root/target/venv-checkov/bin/pip" install --quiet --disable-pip-version-check "$checkov_requirement"
  echo "$checkov_requirement" >"$root/target/venv-checkov/.requirement"
fi
phase "install: Python venvs (moto, SAM, cargo-lambda, checkov)"

# shellcheck source=tests/engines.sh
source tests/engines.sh
install_engines "$root"
phase "install: DynamoDB Local (npm), MiniStack (venv)"
start_engines "$root"
phase "start moto, DynamoDB Local, MiniStack, the SMTP server"

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export TESTRELAY_CORPUS="${TESTRELAY_CORPUS:-$root/../shared/corpus}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
phase "fmt + clippy"
echo "== build: test binaries, then every binary (the Lambda checks run these)"
cargo test --workspace --locked --no-run
cargo build --workspace --locked
phase "build (test profile + function binaries)"

# cargo-nextest runs every test in its own process, tests of all binaries side by side (the
# long ones mostly wait on the engines), four at a time on the two cores.
if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
echo "== cargo nextest run"
test_log="$root/target/test-output.log"
cargo nextest run --workspace --locked --test-threads 4 --no-fail-fast \
  --success-output never --failure-output final 2>&1 | tee "$test_log"
phase "tests (cargo nextest, all binaries)"
echo "== infra: generated template, function/crate match, sam validate --lint, cfn-lint and checkov on the translated template, one API route"
"$venv/bin/python" tests/infra/check.py
phase "infra checks"
echo "== lambda: every function binary started on cargo lambda's Runtime API, invoked with its event"
"$venv/bin/python" tests/lambda/invoke.py
phase "lambda: every function invoked"
echo "== lambda: the function binaries packaged as Lambda zips, cold start and zip size"
"$venv/bin/python" tests/lambda/coldstart.py --package target/debug target/lambda-debug 3
phase "lambda: dev zips, cold start"

echo "== phase times (seconds)"
row() { printf '| %-58s | %6s |\n' "$1" "$2"; }
row "phase" "s"
for r in "${phase_rows[@]}"; do
  row "${r%|*}" "${r##*|}"
done
# Each test binary: its tests, their summed time and its slowest test, from nextest's lines
# ("PASS [  1.234s] (n/N) crate::binary test::name").
awk '/^ *(PASS|FAIL|TIMEOUT)/ && match($0, /\[ *[0-9.]+s\]/) {
       t = substr($0, RSTART + 1, RLENGTH - 3) + 0
       rest = substr($0, RSTART + RLENGTH); sub(/^ *\([^)]*\) */, "", rest)
       split(rest, w, " "); bin = w[1]; name = w[2]
       n[bin]++; sum[bin] += t; if (t > max[bin]) { max[bin] = t; slow[bin] = name }
     }
     END { for (b in n) printf "|   %-56s | %6.0f |  %3d tests, slowest %.0f s: %s\n", b, sum[b], n[b], max[b], slow[b] }' \
  "$test_log" | sort -t'|' -k3 -rn
row "total" "$(($(date +%s) - run_start))"
