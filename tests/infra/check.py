"""Offline checks of infra/template.yaml, run by tests/run-all.sh:

1. every function in the template builds a binary of a crate under functions/, and every
   crate under functions/ has its function in the template;
2. `sam validate --lint` (SAM's own checks and cfn-lint on the SAM template);
3. the SAM template translated to plain CloudFormation (aws-sam-translator, as
   CloudFormation would) and linted by cfn-lint, which catches what linting the SAM template
   misses (a !Ref to a resource that does not exist, properties of generated resources).

Usage: python tests/infra/check.py  (from the repository root, inside the venv)
"""

import copy
import glob
import json
import os
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
    run([os.path.join(BIN, "cfn-lint"), "--regions", "us-east-1", "--", path], os.environ)
    os.unlink(path)


def run(cmd, env):
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    out = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        fail(f"{' '.join(os.path.basename(c) for c in cmd[:2])} failed:\n{out}")
    print(f"ok: {os.path.basename(cmd[0])} {cmd[1] if len(cmd) > 1 else ''}: {out.splitlines()[-1] if out else 'clean'}")


def fail(message):
    print(f"infra check failed: {message}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    t = load()
    check_functions(t)
    sam_validate()
    translate_and_lint(t)
