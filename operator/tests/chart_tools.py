"""Helm and schema checks for operator/tests/chart.rs, run with the tools venv's Python.

    chart_tools.py render CHART NAME NAMESPACE [VALUES_YAML]
        Render with Helm's own engine (helm-python-sdk), offline. Prints JSON:
        {"templates": {path: text}, "crds": {filename: text}}. Values that break
        values.schema.json fail here, as they do for `helm install`.
    chart_tools.py lint CHART [VALUES_YAML]
        `helm lint --strict` for Kubernetes 1.30. Prints the report as JSON.
    chart_tools.py validate-custom CRD_YAML FILE...
        Validate every object of the CRD's kind in FILEs against the CRD's openAPIV3Schema,
        rejecting unknown fields (what `kubectl apply` does with field validation Strict).
    chart_tools.py validate-servicemonitor FILE...
        Validate ServiceMonitors against the part of the prometheus-operator schema the chart
        uses (the full CRD is not available offline), rejecting unknown fields.

Exit status 1 with the reason on stderr when a check fails.
"""

import copy
import json
import sys

import jsonschema
import yaml

try:
    import helm_python as helm
except ImportError:  # render and lint need it; the schema checks do not
    helm = None


def load_values(path):
    if path is None:
        return None
    with open(path) as f:
        return yaml.safe_load(f) or {}


def render(chart_dir, name, namespace, values_path=None):
    chart = helm.Chart.load(chart_dir)
    templates = chart.render(load_values(values_path), name=name, namespace=namespace)
    crds = {c["filename"]: c["data"] for c in chart.crds}
    print(json.dumps({"templates": templates, "crds": crds}))


def lint(chart_dir, values_path=None):
    report = helm.lint(chart_dir, load_values(values_path), strict=True, kube_version="v1.30.0")
    print(json.dumps(report))


def strict_schema(schema):
    """The CRD's OpenAPI v3 schema as JSON Schema: `nullable` becomes a null type, int-or-string
    accepts both, and an object that neither lists `additionalProperties` nor preserves unknown
    fields rejects fields it does not declare."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.pop("x-kubernetes-int-or-string", False):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
        if "properties" in node and "additionalProperties" not in node and not preserve:
            node["additionalProperties"] = False
        for key in ("properties",):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties"):
            walk(node.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(schema)
    return schema


def documents(paths):
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    yield path, doc


def report(errors, checked, what):
    if errors:
        sys.stderr.write("\n".join(errors) + "\n")
        sys.exit(1)
    if checked == 0:
        sys.stderr.write("no %s found in the files given\n" % what)
        sys.exit(1)
    print(json.dumps({"validated": checked}))


def validate_custom(crd_path, paths):
    with open(crd_path) as f:
        crd = yaml.safe_load(f)
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    validators = {}
    for version in crd["spec"]["versions"]:
        schema = strict_schema(version["schema"]["openAPIV3Schema"])
        # apiVersion, kind and metadata are checked by the API server itself.
        for key in ("apiVersion", "kind", "metadata"):
            schema.setdefault("properties", {}).setdefault(key, {})
        validators["%s/%s" % (group, version["name"])] = jsonschema.Draft7Validator(schema)
    errors, checked = [], 0
    for path, doc in documents(paths):
        if doc.get("kind") != kind:
            continue
        validator = validators.get(doc.get("apiVersion"))
        name = doc.get("metadata", {}).get("name")
        if validator is None:
            errors.append("%s: %s %s: apiVersion %s is not served by the CRD"
                          % (path, kind, name, doc.get("apiVersion")))
            continue
        checked += 1
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
            where = ".".join(str(p) for p in error.path) or "(root)"
            errors.append("%s: %s %s: %s: %s" % (path, kind, name, where, error.message))
    report(errors, checked, kind)


# The fields of monitoring.coreos.com/v1 ServiceMonitor the chart writes.
SERVICE_MONITOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                        },
                    },
                },
            },
        },
    },
}


def validate_servicemonitor(paths):
    validator = jsonschema.Draft7Validator(SERVICE_MONITOR)
    errors, checked = [], 0
    for path, doc in documents(paths):
        if doc.get("kind") != "ServiceMonitor":
            continue
        checked += 1
        for error in validator.iter_errors(doc):
            where = ".".join(str(p) for p in error.path) or "(root)"
            errors.append("%s: ServiceMonitor: %s: %s" % (path, where, error.message))
    report(errors, checked, "ServiceMonitor")


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    command, args = argv[1], argv[2:]
    if command in ("render", "lint") and helm is None:
        sys.exit("helm-python-sdk is not installed in this Python (%s); "
                 "install it with `scripts/infra.sh tools`" % sys.executable)
    try:
        if command == "render" and len(args) in (3, 4):
            render(*args)
        elif command == "lint" and len(args) in (1, 2):
            lint(*args)
        elif command == "validate-custom" and len(args) >= 2:
            validate_custom(args[0], args[1:])
        elif command == "validate-servicemonitor" and args:
            validate_servicemonitor(args)
        else:
            sys.exit(__doc__)
    except Exception as e:  # Helm's errors carry the useful message; show it alone.
        if helm is not None and isinstance(e, helm.HelmError):
            sys.stderr.write("%s: %s\n" % (type(e).__name__, e))
            sys.exit(1)
        raise


if __name__ == "__main__":
    main(sys.argv)
