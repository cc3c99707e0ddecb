"""Cold start of every function binary: the time from process start to its first
`GET /2018-06-01/runtime/invocation/next` on a local stand-in for the Lambda Runtime API,
i.e. init done (config parsed, AWS clients and connectors built, secrets read), ready for
the first event; and the size of each function's zip.

Usage: python tests/lambda/coldstart.py [target/lambda] [runs]
    (after `cargo lambda build [--release] --compiler cargo --output-format zip`; the AWS
    side is moto at AWS_ENDPOINT_URL, as for tests/lambda/invoke.py)
or:    python tests/lambda/coldstart.py --package target/debug target/lambda-debug [runs]
    (packages the binaries `cargo build --workspace` made the way Lambda takes them, one
    `bootstrap` at the root of each function's zip, then measures those)
Prints one row per function: median and max init over the runs, and the zip size.
"""

import http.server
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import invoke  # noqa: E402  (the stack and config the invoke check uses)


class Runtime(http.server.BaseHTTPRequestHandler):
    first_next = None

    def do_GET(self):
        if self.path.endswith("/invocation/next") and Runtime.first_next is None:
            Runtime.first_next = time.perf_counter()
        # Never answer: the measurement ends at the request.
        time.sleep(5)

    def log_message(self, *args):
        pass


def binary(root, fn, unpacked):
    """The function's bootstrap, unzipped (as Lambda would) when only the zip was built."""
    plain = os.path.join(root, fn, "bootstrap")
    if os.path.isfile(plain):
        return plain
    target = os.path.join(unpacked, fn)
    if not os.path.isfile(os.path.join(target, "bootstrap")):
        with zipfile.ZipFile(os.path.join(root, fn, "bootstrap.zip")) as z:
            z.extractall(target)
        os.chmod(os.path.join(target, "bootstrap"), 0o755)
    return os.path.join(target, "bootstrap")


def package(binaries, out):
    """`<out>/<function>/bootstrap.zip` for every function crate, from `<binaries>/<function>`."""
    for fn in sorted(os.listdir(os.path.join(invoke.ROOT, "functions"))):
        src = os.path.join(binaries, fn)
        if not os.path.isfile(src):
            invoke.fail(f"no binary {src}: run `cargo build --workspace` first")
        os.makedirs(os.path.join(out, fn), exist_ok=True)
        info = zipfile.ZipInfo("bootstrap", date_time=(2026, 1, 1, 0, 0, 0))
        info.external_attr = 0o100755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(src, "rb") as f, zipfile.ZipFile(os.path.join(out, fn, "bootstrap.zip"), "w") as z:
            z.writestr(info, f.read())
        # Measured from the zip, as Lambda would unpack it.
        stale = os.path.join(out, fn, "bootstrap")
        if os.path.exists(stale):
            os.unlink(stale)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--package"]:
        package(args[1], args[2])
        args = args[2:]
    root = args[0] if args else os.path.join(invoke.ROOT, "target", "lambda")
    runs = int(args[1]) if len(args) > 1 else 5
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    vendor = "http://127.0.0.1:9"
    env = dict(os.environ)
    env.update(invoke.create_stack())
    env.update({
        "TESTRELAY_CONFIG": invoke.config(vendor),
        "TEST_WEBHOOK_SECRET": invoke.WHSEC,
        "TEST_GITHUB_SECRET": invoke.GITHUB_SECRET,
        "TEST_TOKEN": "test-token",
        "TEST_TEAMS_URL": f"{vendor}/teams",
        "TEST_DISCORD_URL": f"{vendor}/discord/api/webhooks/1317000000000000002/token",
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "coldstart",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "coldstart",
        "AWS_LAMBDA_LOG_GROUP_NAME": "coldstart",
        "RUST_LOG": "warn",
    })
    functions = sorted(d for d in os.listdir(root)
                       if os.path.isfile(os.path.join(root, d, "bootstrap.zip"))
                       or os.path.isfile(os.path.join(root, d, "bootstrap")))
    unpacked = tempfile.mkdtemp(prefix="coldstart-")
    if not functions:
        invoke.fail(f"no function binaries under {root}")
    print(f"{'function':<20} {'init median':>12} {'init max':>10} {'zip':>10}")
    worst = 0.0
    for fn in functions:
        times = []
        for _ in range(runs):
            Runtime.first_next = None
            start = time.perf_counter()
            p = subprocess.Popen([binary(root, fn, unpacked)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = start + 10
            while Runtime.first_next is None and time.perf_counter() < deadline and p.poll() is None:
                time.sleep(0.0005)
            first = Runtime.first_next
            p.kill()
            err = p.communicate()[1].decode(errors="replace")
            if first is None:
                invoke.fail(f"{fn} never asked for an event:\n{err[-2000:]}")
            times.append((first - start) * 1000)
        zip_path = os.path.join(root, fn, "bootstrap.zip")
        size = os.path.getsize(zip_path) if os.path.exists(zip_path) else None
        if size is not None:
            with zipfile.ZipFile(zip_path) as z:
                assert "bootstrap" in z.namelist(), zip_path
        med = statistics.median(times)
        worst = max(worst, med)
        print(f"{fn:<20} {med:>9.1f} ms {max(times):>7.1f} ms "
              f"{(f'{size / 1e6:.1f} MB') if size else '-':>10}")
    print(f"slowest median init: {worst:.1f} ms over {runs} runs each")


if __name__ == "__main__":
    main()
