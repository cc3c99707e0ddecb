#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (a Python venv with moto
# as the local AWS), starts moto on a free loopback port, then runs formatting, lints and
# every test. Usage: bash tests/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

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

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export TESTRELAY_CORPUS="${TESTRELAY_CORPUS:-$root/../shared/corpus}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== infra: function/crate match, sam validate --lint, cfn-lint on the translated template"
"$venv/bin/python" tests/infra/check.py
echo "== lambda: every function binary run by cargo lambda watch + invoke with its event"
"$venv/bin/python" tests/lambda/invoke.py
echo "== lambda: cargo lambda build (host, --compiler cargo), cold start and zip size"
functions=$(for f in functions/*/; do printf -- '-p %s ' "$(basename "$f")"; done)
# shellcheck disable=SC2086
cargo lambda build --compiler cargo --output-format zip --lambda-dir target/lambda-debug $functions 2>&1 | tail -1
"$venv/bin/python" tests/lambda/coldstart.py target/lambda-debug 3
