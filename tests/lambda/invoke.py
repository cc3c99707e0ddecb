"""Runs every real Lambda binary once against its events/ fixture, the way AWS would call
it: `cargo lambda watch --only-lambda-apis` emulates the Runtime API, each function's binary
(from the test command's `cargo build --workspace`, in target/debug or
$TESTRELAY_LAMBDA_BINARIES) is started against it as Lambda starts a bootstrap, and
`cargo lambda invoke` sends each event. The AWS side is moto (AWS_ENDPOINT_URL, started by tests/run-all.sh); every connector
points at a small local vendor that answers like TestRail, Jira, Slack, Teams, PagerDuty,
Discord, Datadog and a webhook receiver would, and the email connector sends through moto's SES
(its sender an identity the check verifies). Then the functions' own stdout is parsed for CloudWatch Embedded
Metric Format lines, which must be valid EMF within CloudWatch's limits and carry the
metrics each function is documented to emit.

Usage (from the repository root, inside the venv, with moto running, after
`cargo build --workspace`):
    python tests/lambda/invoke.py
"""

import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
KINDS = ["webhook", "testrail", "jira", "slack", "teams", "pagerduty", "discord", "datadog", "email"]
NAMES = {"webhook": "team-hook", "testrail": "qa", "jira": "jira", "slack": "chat",
         "teams": "cards", "pagerduty": "pager", "discord": "rooms", "datadog": "dd",
         "email": "mail"}
# The email connector's sender domain (an SES identity in moto) and recipient.
MAIL_DOMAIN = f"invoke-{uuid.uuid4().hex[:8]}.test"
MAIL_TO = "team@example.test"
API_KEY = "trk_test_key_for_integration_tests"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# events/apigw-post-hook-github.json is signed with it.
GITHUB_SECRET = "gh-secret-for-integration-tests"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Vendor(http.server.BaseHTTPRequestHandler):
    """Answers every vendor's calls with a success in that vendor's shape."""

    calls = []

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        Vendor.calls.append((self.command, self.path, body))
        path = self.path
        if "add_run" in path:
            answer = {"id": 1, "url": "http://x"}
        elif "add_results_for_cases" in path:
            answer = []
        elif "get_project" in path:
            answer = {"id": 1, "name": "Shop", "suite_mode": 1}
        elif path.startswith("/slack/"):
            answer = {"ok": True, "ts": "1795341600.000100", "channel": "C1", "team": "Acme", "user": "bot"}
        elif path.startswith("/rest/api/2/issue"):
            answer = {"id": "1", "key": "SHOP-1", "self": "http://x"}
        elif "search" in path:
            answer = {"issues": []}
        elif path.startswith("/rest/api/2/myself"):
            answer = {"displayName": "CI"}
        elif path.startswith("/pagerduty/"):
            answer = {"status": "success", "dedup_key": "k"}
        elif path.startswith("/datadog/api/v1/validate"):
            answer = {"valid": True}
        elif path.startswith("/datadog/api/v1/events"):
            answer = {"status": "ok", "event": {"id": 7180000000000000001,
                      "id_str": "7180000000000000001", "title": "t"}}
        elif path.startswith("/datadog/"):
            answer = {"errors": []}
        elif path.startswith("/discord/"):
            answer = {"id": "1317000000000000001", "type": 0, "channel_id": "1317000000000000000",
                      "webhook_id": "1317000000000000002", "name": "testrelay"}
        else:
            answer = {"ok": True}
        data = json.dumps(answer).encode()
        self.send_response(202 if path.startswith(("/pagerduty/", "/datadog/api/v")) and
                           "validate" not in path else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args):
        pass


def config(vendor):
    return f"""
[network]
allow = ["127.0.0.1/32"]

[[api_keys]]
id = "ci"
sha256 = "{__import__('hashlib').sha256(API_KEY.encode()).hexdigest()}"
admin = true

[projects.web]
connectors = ["team-hook", "qa", "jira", "chat", "cards", "pager", "rooms", "dd", "mail"]

[health]
alert = "chat"

[hooks.github]
scheme = "github"
secrets = [{{ env = "TEST_GITHUB_SECRET" }}]
format = "github"
project = "web"

[connectors.team-hook]
kind = "webhook"
url = "{vendor}/hook"
allow_http = true
secret = {{ env = "TEST_WEBHOOK_SECRET" }}

[connectors.qa]
kind = "testrail"
url = "{vendor}"
user = "ci@example.com"
api_key = {{ env = "TEST_TOKEN" }}
project_id = 1
allow_http = true

[connectors.jira]
kind = "jira"
url = "{vendor}"
deployment = "data_center"
token = {{ env = "TEST_TOKEN" }}
project_key = "SHOP"
allow_http = true
[connectors.jira.bugs]

[connectors.chat]
kind = "slack"
token = {{ env = "TEST_TOKEN" }}
channel = "C1"
api_url = "{vendor}/slack"
allow_http = true

[connectors.cards]
kind = "teams"
url = {{ env = "TEST_TEAMS_URL" }}
allow_http = true

[connectors.pager]
kind = "pagerduty"
routing_key = {{ env = "TEST_TOKEN" }}
url = "{vendor}/pagerduty"
allow_http = true

[connectors.rooms]
kind = "discord"
url = {{ env = "TEST_DISCORD_URL" }}
allow_http = true

[connectors.dd]
kind = "datadog"
api_key = {{ env = "TEST_TOKEN" }}
api_url = "{vendor}/datadog"
allow_http = true

[connectors.mail]
kind = "email"
from = "CI <ci@{MAIL_DOMAIN}>"
to = ["{MAIL_TO}"]
ses = {{}}
"""


def ses_sent():
    """Every raw message moto's SES took (tests/moto_server.py)."""
    import urllib.request
    with urllib.request.urlopen(f"{os.environ['AWS_ENDPOINT_URL']}/_testrelay/ses-sent") as r:
        return json.load(r)


def create_stack():
    """The resources infra/template.yaml creates, in moto, and the verified SES identity
    the email connector sends as."""
    import urllib.request
    boto3.client("sesv2").create_email_identity(EmailIdentity=MAIL_DOMAIN)
    urllib.request.urlopen(urllib.request.Request(
        f"{os.environ['AWS_ENDPOINT_URL']}/_testrelay/ses-verify?identity={MAIL_DOMAIN}",
        method="POST")).close()
    tag = uuid.uuid4().hex[:8]
    s3 = boto3.client("s3")
    bucket = f"testrelay-invoke-{tag}"
    s3.create_bucket(Bucket=bucket)
    ddb = boto3.client("dynamodb")
    runs, state = f"runs-{tag}", f"state-{tag}"
    ddb.create_table(TableName=runs, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}])
    ddb.create_table(TableName=state, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    sqs = boto3.client("sqs")
    env = {"TESTRELAY_BUCKET": bucket, "TESTRELAY_RUNS_TABLE": runs,
           "TESTRELAY_STATE_TABLE": state}
    for k in KINDS:
        dlq = sqs.create_queue(QueueName=f"{k}-dlq-{tag}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        q = sqs.create_queue(QueueName=f"{k}-{tag}", Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "10"})})["QueueUrl"]
        env[f"TESTRELAY_QUEUE_{k.upper()}"] = q
        env[f"TESTRELAY_DLQ_{k.upper()}"] = dlq
    return env


def invoke(function, event, port, log):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(event, f)
        path = f.name
    started = time.time()
    # "_": the emulator started with --only-lambda-apis serves one function, by that name.
    result = subprocess.run(
        [os.path.join(BIN, "cargo-lambda"), "lambda", "invoke", "_",
         "--invoke-address", "127.0.0.1", "--invoke-port", str(port), "--data-file", path],
        capture_output=True, text=True, cwd=ROOT, timeout=60)
    os.unlink(path)
    if result.returncode != 0:
        with open(log, errors="replace") as f:
            tail = "".join(f.readlines()[-40:])
        fail(f"invoking {function} failed:\n{result.stdout}\n{result.stderr}\n{function}'s output:\n{tail}")
    print(f"ok: {function} answered in {time.time() - started:.1f} s")
    return json.loads(result.stdout)


def event(name):
    with open(os.path.join(ROOT, "events", name)) as f:
        return json.load(f)


def emf_lines(log_path):
    """Every EMF line the functions printed, checked against CloudWatch's rules."""
    found = []
    with open(log_path, errors="replace") as f:
        for line in f:
            start = line.find('{"')
            if start < 0 or '"_aws"' not in line:
                continue
            doc = json.loads(line[start:])
            aws = doc["_aws"]
            assert isinstance(aws["Timestamp"], int), line
            directives = aws["CloudWatchMetrics"]
            for d in directives:
                assert d["Namespace"] == "testrelay/invoke", d
                metrics = d["Metrics"]
                assert 1 <= len(metrics) <= 100, line
                for dims in d["Dimensions"]:
                    assert len(dims) <= 30, line
                    for dim in dims:
                        assert isinstance(doc[dim], str), f"dimension {dim} missing: {line}"
                for m in metrics:
                    assert m["Unit"] in ("Count", "Milliseconds", "None"), line
                    assert isinstance(doc[m["Name"]], (int, float)), line
                    found.append((m["Name"], {k: doc[k] for dims in d["Dimensions"] for k in dims}))
    return found


def fail(message):
    print(f"lambda invoke check failed: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Vendor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    vendor = f"http://127.0.0.1:{server.server_address[1]}"
    env = dict(os.environ)
    env.update(create_stack())
    env.update({
        "TESTRELAY_CONFIG": config(vendor),
        "TESTRELAY_METRICS_NAMESPACE": "testrelay/invoke",
        "TEST_WEBHOOK_SECRET": WHSEC,
        "TEST_GITHUB_SECRET": GITHUB_SECRET,
        "TEST_TOKEN": "test-token",
        "TEST_TEAMS_URL": f"{vendor}/teams/workflow",
        "TEST_DISCORD_URL": f"{vendor}/discord/api/webhooks/1317000000000000002/token",
        # As the template sets it on the delivery functions (<Kind>Concurrency).
        "TESTRELAY_DELIVERY_CONCURRENCY": "2",
        "TESTRELAY_RUN_RETENTION_DAYS": "30",
        "RUST_LOG": "info",
    })
    logs = []

    binaries = os.environ.get("TESTRELAY_LAMBDA_BINARIES", os.path.join(ROOT, "target", "debug"))
    port = free_port()
    watch_log = tempfile.NamedTemporaryFile("w", suffix="-watch.log", delete=False)
    # The Runtime API only: the functions are the binaries the test build already made.
    watch = subprocess.Popen(
        [os.path.join(BIN, "cargo-lambda"), "lambda", "watch", "--only-lambda-apis",
         "-A", "127.0.0.1", "-P", str(port)],
        cwd=ROOT, env=env, stdout=watch_log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        fail("cargo lambda watch --only-lambda-apis did not start")

    def run(function, events):
        """Starts the `function` binary against the emulated Runtime API, the way Lambda
        starts a bootstrap, and sends it `events` with `cargo lambda invoke`."""
        log = tempfile.NamedTemporaryFile("w", suffix=f"-{function}.log", delete=False)
        logs.append(log.name)
        fn_env = dict(env)
        fn_env.update({
            "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{port}/.rt",
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        })
        proc = subprocess.Popen([os.path.join(binaries, function)], env=fn_env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            return [invoke(function, e, port, log.name) for e in events]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()

    accepted = run("ingest", [event("apigw-post-report.json")])[0]
    if accepted.get("statusCode") != 202:
        fail(f"ingest answered {accepted}")
    run_id = json.loads(accepted["body"])["run_id"]
    for k in KINDS:
        batch = event(f"sqs-{k}-batch.json")
        for r in batch["Records"]:
            r["body"] = r["body"].replace("00000000000000000000000000", run_id)
        out = run(f"deliver-{k}", [batch])[0]
        expected = ["2e1424d4-f796-459a-8184-9c92662be6da"] if k == "webhook" else []
        got = [f["itemIdentifier"] for f in out["batchItemFailures"]]
        if got != expected:
            fail(f"deliver-{k}: batch item failures {got}, expected {expected}")
    mails = [m for m in ses_sent() if MAIL_TO in m["destinations"] and run_id in m["raw"]]
    if len(mails) != 1 or f"@{MAIL_DOMAIN}>" not in mails[0]["raw"]:
        fail(f"deliver-email: SES took {len(mails)} messages for the run, expected 1")
    print("ok: deliver-email sent the run's message through SES (moto)")
    report = run("health", [event("scheduler-health.json")])[0]
    if report["status"] != "HEALTHY" or len(report["connectors"]) != len(KINDS):
        fail(f"health: {json.dumps(report)[:2000]}")
    got, hook, unknown = run("ingest", [event("apigw-get-health.json"),
                                        event("apigw-post-hook-github.json"),
                                        event("apigw-unknown-route.json")])
    if got.get("statusCode") != 200 or json.loads(got["body"])["status"] != "HEALTHY":
        fail(f"GET /v1/health: {got}")
    # The API's one $default route brings every path to the router: a signed GitHub
    # delivery becomes a run, an unknown path is the router's own 404 problem+json.
    if hook.get("statusCode") != 202 or not json.loads(hook["body"]).get("run_id"):
        fail(f"POST /v1/hooks/github: {hook}")
    if unknown.get("statusCode") != 404 or \
            unknown.get("headers", {}).get("content-type") != "application/problem+json":
        fail(f"an unknown route: {unknown}")
    print("ok: a signed GitHub delivery became a run; an unknown route answered 404 problem+json")
    metrics = [m for path in logs for m in emf_lines(path)]
    names = {m for m, _ in metrics}
    for needed in ["RunsAccepted", "TestsAccepted", "DeliveryOutcome", "DeliveryLatency",
                   "HealthStatus", "ProbeLatency", "BreakerOpen", "BreakersOpenLongest"]:
        if needed not in names:
            fail(f"no {needed} metric in the functions' output (saw {sorted(names)}); logs: {logs}")
    delivered = {d.get("Connector") for m, d in metrics if m == "DeliveryOutcome" and d.get("Outcome") == "delivered"}
    if delivered != set(NAMES.values()):
        fail(f"DeliveryOutcome=delivered for {sorted(delivered)}, expected every connector")
    print(f"ok: {len(metrics)} EMF data points from the functions' stdout, all valid; "
          f"{len(Vendor.calls)} vendor calls")
    watch.terminate()
    watch.wait(timeout=20)
    for path in logs + [watch_log.name]:
        os.unlink(path)


if __name__ == "__main__":
    main()
