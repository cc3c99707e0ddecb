"""Offline checks of infra/template.yaml, run by tests/run-all.sh:

0. infra/template.yaml is exactly what infra/generate.py writes from infra/template.src.yaml
   (the per-kind delivery pieces written once);
1. every function in the template builds a binary of a crate under functions/, and every
   crate under functions/ has its function in the template;
2. `sam validate --lint` (SAM's own checks and cfn-lint on the SAM template);
3. the SAM template translated to plain CloudFormation (aws-sam-translator, as
   CloudFormation would) and linted by cfn-lint, which catches what linting the SAM template
   misses (a !Ref to a resource that does not exist, properties of generated resources);
4. routes: the HTTP API has one route, `$default` (any method, any path), to the ingest
   function, so every route the router serves (shared/api/src/lib.rs) reaches it and the
   router answers unknown ones with its own problem+json 404/405;
5. checkov on the translated template: every failing check must be listed with its reason in
   infra/checkov-skips.yaml, and every check listed there must still fail (no stale reasons);
6. the alarm thresholds tests/it/alarms.rs drives an outage against are the template's defaults,
   and the metrics those alarms watch are the ones the code emits.

Usage: python tests/infra/check.py  (from the repository root, inside the venv)
"""

import copy
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")
BIN = os.path.dirname(sys.executable)


class Loader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as their long form."""


def _tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else "Fn::" + suffix
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


Loader.add_multi_constructor("!", _tag)


def load():
    with open(TEMPLATE) as f:
        return yaml.load(f, Loader=Loader)


def check_functions(template):
    crates = {}
    for manifest in glob.glob(os.path.join(ROOT, "functions", "*", "Cargo.toml")):
        with open(manifest, "rb") as f:
            crates[tomllib.load(f)["package"]["name"]] = os.path.relpath(manifest, ROOT)
    binaries = {}
    for name, res in template["Resources"].items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if res.get("Metadata", {}).get("BuildMethod") != "rust-cargolambda" or not binary:
            fail(f"{name}: needs Metadata BuildMethod rust-cargolambda and BuildProperties.Binary")
        binaries[binary] = name
    for binary, name in sorted(binaries.items()):
        if binary not in crates:
            fail(f"{name} builds binary {binary!r}, but no crate under functions/ is named so")
    for crate, manifest in sorted(crates.items()):
        if crate not in binaries:
            fail(f"{manifest}: crate {crate!r} has no function in infra/template.yaml")
    print(f"ok: {len(binaries)} functions, each with its crate: {', '.join(sorted(binaries))}")


def sam_validate():
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1", SAM_CLI_TELEMETRY="0")
    run([os.path.join(BIN, "sam"), "validate", "--lint", "-t", TEMPLATE], env)


class NoManagedPolicies:
    """The template names no managed policy by name; translation must not call IAM."""

    def load(self):
        return {}


def translate_and_lint(template):
    from samtranslator.translator.transform import transform

    sam = copy.deepcopy(template)
    for res in sam["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            # What `sam package` puts there.
            res["Properties"]["CodeUri"] = "s3://testrelay-artifacts/function.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    cfn = transform(sam, {}, NoManagedPolicies())
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfn, f, indent=1)
        path = f.name
    kinds = sorted({r["Type"] for r in cfn["Resources"].values()})
    print(f"ok: translated to {len(cfn['Resources'])} CloudFormation resources ({len(kinds)} types)")
    check_routes(cfn)
    run([os.path.join(BIN, "cfn-lint"), "--regions", "us-east-1", "--", path], os.environ)
    checkov(path)
    os.unlink(path)


def router_paths():
    """The paths the API router serves, read from its source."""
    with open(os.path.join(ROOT, "shared", "api", "src", "lib.rs")) as f:
        return re.findall(r'\.route\("([^"]+)"', f.read())


def check_routes(cfn):
    apis = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    if len(apis) != 1:
        fail(f"expected one HTTP API, found {len(apis)}")
    paths = apis[0]["Properties"]["Body"]["paths"]
    if list(paths) != ["$default"]:
        fail(f"the HTTP API routes {sorted(paths)}; keep only the $default route to ingest, "
             f"so that every path the router serves ({', '.join(router_paths())}) reaches it")
    route = paths["$default"]
    if list(route) != ["x-amazon-apigateway-any-method"]:
        fail(f"the $default route must take any method, not {sorted(route)}")
    uri = json.dumps(route["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]["uri"])
    if "${IngestFunction.Arn}" not in uri:
        fail(f"the $default route must go to IngestFunction, not {uri}")
    served = router_paths()
    if "/v1/hooks/{source}" not in served or "/v1/reports" not in served:
        fail(f"could not read the router's routes from shared/api/src/lib.rs: {served}")
    print(f"ok: the HTTP API's one route, $default, takes all {len(served)} router paths to ingest")


def checkov(path):
    """checkov (its own venv, target/venv-checkov, installed by the test command)."""
    exe = os.path.join(ROOT, "target", "venv-checkov", "bin", "checkov")
    with open(os.path.join(ROOT, "infra", "checkov-skips.yaml")) as f:
        skips = yaml.safe_load(f)
    result = subprocess.run([exe, "-f", path, "--framework", "cloudformation", "--quiet",
                             "--compact", "-o", "json"], capture_output=True, text=True)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        fail(f"checkov did not run:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    failed = {}
    for f in report["results"]["failed_checks"]:
        failed.setdefault(f["check_id"], []).append(f["resource"])
    unexplained = {c: r for c, r in failed.items() if c not in skips}
    if unexplained:
        fail("checkov: failing checks with no reason in infra/checkov-skips.yaml:\n" +
             "\n".join(f"  {c}: {', '.join(r)}" for c, r in sorted(unexplained.items())))
    stale = sorted(set(skips) - set(failed))
    if stale:
        fail(f"checkov: {', '.join(stale)} no longer fail: take them out of infra/checkov-skips.yaml")
    passed = report["summary"]["passed"]
    print(f"ok: checkov {report['summary'].get('checkov_version', '')}: {passed} checks passed, "
          f"{len(skips)} skipped with their reasons (infra/checkov-skips.yaml)")


def run(cmd, env):
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    out = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        fail(f"{' '.join(os.path.basename(c) for c in cmd[:2])} failed:\n{out}")
    print(f"ok: {os.path.basename(cmd[0])} {cmd[1] if len(cmd) > 1 else ''}: {out.splitlines()[-1] if out else 'clean'}")


def fail(message):
    print(f"infra check failed: {message}", file=sys.stderr)
    sys.exit(1)


def alarm_defaults(template):
    """tests/it/alarms.rs checks that an outage trips the alarms at these defaults."""
    with open(os.path.join(ROOT, "tests", "it", "alarms.rs")) as f:
        test = f.read()
    params = template["Parameters"]
    pairs = [("UNDELIVERED_ALARM_S", "UndeliveredAlarmSeconds"),
             ("BREAKER_OPEN_ALARM_MIN", "BreakerOpenAlarmMinutes")]
    for const, param in pairs:
        m = re.search(rf"const {const}: f64 = ([0-9.]+);", test)
        if not m or float(m.group(1)) != float(params[param]["Default"]):
            fail(f"tests/it/alarms.rs {const} must be the template's {param} default "
                 f"({params[param]['Default']})")
    watched = {r["Properties"].get("MetricName") for r in template["Resources"].values()
               if r["Type"] == "AWS::CloudWatch::Alarm"}
    with open(os.path.join(ROOT, "shared", "domain", "src", "health", "metrics.rs")) as f:
        documented = f.read()
    for metric in ["UndeliveredAge", "BreakersOpenLongest", "HealthStatus"]:
        if metric not in watched or f"`{metric}`" not in documented:
            fail(f"{metric}: an alarm must watch it and shared/domain/src/health/metrics.rs list it")
    print("ok: the outage test's alarm thresholds are the template's defaults")


def generated():
    run([sys.executable, os.path.join(ROOT, "infra", "generate.py"), "--check"], os.environ)


if __name__ == "__main__":
    generated()
    t = load()
    check_functions(t)
    alarm_defaults(t)
    sam_validate()
    translate_and_lint(t)
