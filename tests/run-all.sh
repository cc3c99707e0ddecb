#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (a Python venv with moto
# as the local AWS), starts moto on a free loopback port, then runs formatting, lints and
# every test. Usage: bash tests/run-all.sh
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
phase "install (Python venv: moto, SAM CLI, cfn-lint, cargo-lambda)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
log="$root/target/moto.log"
# One request at a time: see tests/moto_server.py (moto's own threads break item atomicity).
"$venv/bin/python" tests/moto_server.py "$port" >"$log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/moto-api/data.json" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then echo "moto failed to start:"; cat "$log"; exit 1; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/moto-api/data.json" >/dev/null || { echo "moto did not answer"; cat "$log"; exit 1; }
echo "== moto listening on 127.0.0.1:$port"
phase "start moto"

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export TESTRELAY_CORPUS="${TESTRELAY_CORPUS:-$root/../shared/corpus}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
phase "fmt + clippy"
echo "== cargo test (build)"
cargo test --workspace --locked --no-run
phase "build (test profile)"
echo "== cargo test"
test_log="$root/target/test-output.log"
cargo test --workspace --locked 2>&1 | tee "$test_log"
phase "tests (all binaries)"
echo "== infra: function/crate match, sam validate --lint, cfn-lint on the translated template"
"$venv/bin/python" tests/infra/check.py
phase "infra checks"
echo "== lambda: every function binary run by cargo lambda watch + invoke with its event"
"$venv/bin/python" tests/lambda/invoke.py
phase "lambda: watch + invoke every function"
echo "== lambda: cargo lambda build (host, --compiler cargo), cold start and zip size"
functions=$(for f in functions/*/; do printf -- '-p %s ' "$(basename "$f")"; done)
# shellcheck disable=SC2086
cargo lambda build --compiler cargo --output-format zip --lambda-dir target/lambda-debug $functions 2>&1 | tail -1
"$venv/bin/python" tests/lambda/coldstart.py target/lambda-debug 3
phase "lambda: build dev zips, cold start"

echo "== phase times (seconds)"
row() { printf '| %-58s | %6s |\n' "$1" "$2"; }
row "phase" "s"
for r in "${phase_rows[@]}"; do
  row "${r%|*}" "${r##*|}"
done
# Each test binary's own time (one second or more), as cargo test reported it.
awk '/^     Running /{bin=$NF; gsub(/[()]/,"",bin); n=split(bin,parts,"/"); bin=parts[n]; sub(/-[0-9a-f]+$/,"",bin)}
     /^test result:/{for(i=1;i<=NF;i++) if($i=="in"){t=$(i+1)}; sub(/s$/,"",t);
       if (t+0 >= 1) printf "|   test binary %-44s | %6.0f |\n", bin, t}' "$test_log"
row "total" "$(($(date +%s) - run_start))"
