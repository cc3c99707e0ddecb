# Sourced by tests/run-all.sh: installs and starts the local AWS engines the tests run the
# AWS adapters on, each on a free loopback port, stopped by PID when the caller exits:
#   moto            every service (AWS_ENDPOINT_URL): the Lambda checks and most AWS tests
#   DynamoDB Local  AWS's own DynamoDB engine (TESTRELAY_DYNAMODB_LOCAL_URL)
#   MiniStack       an independent SQS, S3, Secrets Manager and SES (TESTRELAY_MINISTACK_URL)
#   an SMTP server  tests/smtp_server.py (aiosmtpd): STARTTLS, implicit TLS and plain ports
#                   (TESTRELAY_SMTP_STARTTLS_PORT, _TLS_PORT, _PLAIN_PORT; its mail and CA
#                   under TESTRELAY_SMTP_DIR)
# The contract suites and the fault-injection suite run on moto and on DynamoDB Local +
# MiniStack. Needs: the venv with moto ($venv), python3, java and npm.

# DynamoDB Local ships inside this npm tarball (nothing is downloaded at run time). Its
# licence forbids redistributing the jar: it lives under target/, never in the repository.
DYNAMODB_LOCAL_PACKAGE="amplify-dynamodb-simulator@2.9.30"
MINISTACK_REQUIREMENT="ministack==1.5.33"

engine_pids=()
stop_engines() {
  for pid in "${engine_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# install_engines ROOT: DynamoDB Local under target/dynamodb-local, MiniStack in its own venv
# (it pins a botocore that moto's boto3 does not take).
install_engines() {
  local root=$1
  local ddb="$root/target/dynamodb-local"
  if [ "$(cat "$ddb/.package" 2>/dev/null)" != "$DYNAMODB_LOCAL_PACKAGE" ]; then
    echo "== installing DynamoDB Local ($DYNAMODB_LOCAL_PACKAGE from npm) into $ddb"
    rm -rf "$ddb" && mkdir -p "$ddb"
    (cd "$ddb" && npm pack --silent "$DYNAMODB_LOCAL_PACKAGE" >/dev/null && tar xzf ./*.tgz && rm ./*.tgz)
    echo "$DYNAMODB_LOCAL_PACKAGE" >"$ddb/.package"
  fi
  local ms="$root/target/venv-ministack"
  if [ "$(cat "$ms/.requirement" 2>/dev/null)" != "$MINISTACK_REQUIREMENT" ]; then
    echo "== installing $MINISTACK_REQUIREMENT into $ms"
    python3 -m venv "$ms"
    "$ms/bin/pip" install --quiet --disable-pip-version-check "$MINISTACK_REQUIREMENT"
    echo "$MINISTACK_REQUIREMENT" >"$ms/.requirement"
  fi
}

# wait_for NAME URL PID LOG: until URL answers anything over HTTP (30 s at most).
wait_for() {
  local name=$1 url=$2 pid=$3 log=$4
  for _ in $(seq 1 150); do
    if curl -s -o /dev/null "$url"; then
      echo "== $name listening on ${url%/*}"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then echo "$name failed to start:"; cat "$log"; return 1; fi
    sleep 0.2
  done
  echo "$name did not answer within 30 s:"; cat "$log"; return 1
}

# start_engines ROOT: starts all four and exports their endpoints.
start_engines() {
  local root=$1 port log
  trap stop_engines EXIT

  port=$(free_port)
  log="$root/target/moto.log"
  # One request at a time: see tests/moto_server.py (moto's own threads break item atomicity).
  "$venv/bin/python" tests/moto_server.py "$port" >"$log" 2>&1 &
  engine_pids+=($!)
  wait_for moto "http://127.0.0.1:$port/moto-api/data.json" $! "$log"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"

  port=$(free_port)
  log="$root/target/dynamodb-local.log"
  # It takes no bind address (it listens on every interface); clients use loopback only.
  (cd "$root/target/dynamodb-local/package/emulator" &&
    exec java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -sharedDb -disableTelemetry -port "$port") >"$log" 2>&1 &
  engine_pids+=($!)
  local ddb_pid=$! ddb_port=$port ddb_log=$log

  port=$(free_port)
  log="$root/target/ministack.log"
  BIND_HOST=127.0.0.1 GATEWAY_PORT=$port SERVICES=sqs,s3,secretsmanager,ses \
    "$root/target/venv-ministack/bin/ministack" >"$log" 2>&1 &
  engine_pids+=($!)
  wait_for MiniStack "http://127.0.0.1:$port/_ministack/health" $! "$log"
  export TESTRELAY_MINISTACK_URL="http://127.0.0.1:$port"

  local smtp_dir="$root/target/smtp" p1 p2 p3
  rm -rf "$smtp_dir"
  p1=$(free_port) p2=$(free_port) p3=$(free_port)
  log="$root/target/smtp.log"
  "$venv/bin/python" tests/smtp_server.py "$smtp_dir" "$p1" "$p2" "$p3" >"$log" 2>&1 &
  engine_pids+=($!)
  local smtp_pid=$!
  # It writes its CA once every port listens.
  for _ in $(seq 1 150); do
    [ -f "$smtp_dir/ca.pem" ] && break
    if ! kill -0 "$smtp_pid" 2>/dev/null; then echo "SMTP server failed to start:"; cat "$log"; return 1; fi
    sleep 0.2
  done
  [ -f "$smtp_dir/ca.pem" ] || { echo "SMTP server did not start within 30 s:"; cat "$log"; return 1; }
  echo "== SMTP server listening on 127.0.0.1:$p1 (STARTTLS), :$p2 (TLS), :$p3 (plain)"
  export TESTRELAY_SMTP_DIR="$smtp_dir" TESTRELAY_SMTP_STARTTLS_PORT=$p1 \
    TESTRELAY_SMTP_TLS_PORT=$p2 TESTRELAY_SMTP_PLAIN_PORT=$p3

  wait_for "DynamoDB Local" "http://127.0.0.1:$ddb_port/" "$ddb_pid" "$ddb_log"
  export TESTRELAY_DYNAMODB_LOCAL_URL="http://127.0.0.1:$ddb_port"
}
