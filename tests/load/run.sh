#!/usr/bin/env bash
# Load test of `testrelay serve` on loopback (not part of the test suite; prints figures):
#   bash tests/load/run.sh [seconds] [connections]
# Starts a receiver (a second testrelay in dev mode: its /dev/sink verifies every signature),
# starts testrelay with a config routing project "web" to that receiver, drives
# POST /v1/reports with wrk, then waits until every accepted report was delivered.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
duration=${1:-20}
connections=${2:-32}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -p testrelay-cli
bin="$root/target/release/testrelay"

work=$(mktemp -d)
pids=()
trap 'kill ${pids[*]} 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 100); do curl -fsS "http://$1/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1"; exit 1; }

recv_port=$(free_port)
RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$recv_port" --data-dir "$work/receiver" >"$work/receiver.log" 2>&1 &
pids+=($!)
wait_up "127.0.0.1:$recv_port"

key="trk_load_$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
hash=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
port=$(free_port)
cat >"$work/testrelay.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
data_dir = "$work/relay"

[network]
allow = ["127.0.0.1/32"]   # the receiver is on loopback

[[api_keys]]
id = "load"
sha256 = "$hash"

[projects.web]
connectors = ["receiver"]

[connectors.receiver]
kind = "webhook"
url = "http://127.0.0.1:$recv_port/dev/sink"
allow_http = true
secret = { file = "$work/receiver/secrets/dev-sink" }
TOML
RUST_LOG=warn "$bin" serve --config "$work/testrelay.toml" >"$work/relay.log" 2>&1 &
relay_pid=$!
pids+=($relay_pid)
wait_up "127.0.0.1:$port"

echo "== wrk: ${duration}s, $connections connections, 2 threads, POST /v1/reports (5-test JUnit)"
start=$(date +%s.%N)
TESTRELAY_LOAD_KEY="$key" wrk -t2 -c"$connections" -d"${duration}s" --latency -s tests/load/post.lua \
  "http://127.0.0.1:$port/v1/reports?project=web&branch=main&commit=load" | tee "$work/wrk.txt"
accepted=$(grep -oP 'LOAD requests=\K[0-9]+' "$work/wrk.txt")
non2xx=$(grep -oP 'Non-2xx or 3xx responses: \K[0-9]+' "$work/wrk.txt" || echo 0)
accepted=$((accepted - non2xx))

echo "== waiting for every accepted report to reach the receiver"
deadline=$((SECONDS + 300))
while :; do
  received=$(curl -fsS "http://127.0.0.1:$recv_port/dev/sink" | python3 -c 'import json,sys; print(json.load(sys.stdin)["received"])')
  [ "$received" -ge "$accepted" ] && break
  [ $SECONDS -ge $deadline ] && { echo "only $received of $accepted delivered after 300 s"; exit 1; }
  sleep 0.5
done
end=$(date +%s.%N)
rss=$(awk '/VmHWM/ {print $2/1024 " MB"}' "/proc/$relay_pid/status")
python3 - "$accepted" "$non2xx" "$received" "$start" "$end" "$duration" "$rss" "$work/wrk.txt" <<'PY'
import re, sys
accepted, non2xx, received, start, end, duration, rss, wrk = sys.argv[1:]
text = open(wrk).read()
m = re.search(r"LOAD requests=(\d+) errors_socket=(\d+) p50_ms=([\d.]+) p90_ms=([\d.]+) p99_ms=([\d.]+) max_ms=([\d.]+)", text)
req, sock, p50, p90, p99, mx = m.groups()
print(f"RESULT accepted={accepted} rejected={non2xx} socket_errors={sock} "
      f"reports_per_s={int(accepted)/float(duration):.0f} p50_ms={p50} p90_ms={p90} p99_ms={p99} max_ms={mx} "
      f"delivered={received} all_delivered_after_s={float(end)-float(start):.1f} relay_peak_rss={rss}")
PY
