"""Validates Socket.IO payloads against the AsyncAPI document (tests/tests/realtime.rs).

Reads one JSON object from stdin: {"document": <the AsyncAPI document>, "specification": <the
path of AsyncAPI's own JSON Schema for its version (the npm package @asyncapi/specs)>, "seen":
[[<message name in components.messages>, <payload>], ...]}. First checks the document against the
AsyncAPI specification, then each payload against its message's schema. Prints one line per
finding and exits 1 if there is any; exits 0 otherwise.
"""

import json
import sys

from jsonschema import Draft7Validator, Draft202012Validator

def main() -> int:
    given = json.load(sys.stdin)
    document, seen = given["document"], given["seen"]
    messages = document["components"]["messages"]
    failures = 0
    with open(given["specification"], encoding="utf-8") as f:
        specification = json.load(f)
    for error in Draft7Validator(specification).iter_errors(document):
        path = "/".join(str(p) for p in error.absolute_path)
        print(f"the document, at /{path}: {error.message[:300]}")
        failures += 1
    for name, payload in seen:
        if name not in messages:
            print(f"{name}: not in the document: {json.dumps(payload)[:300]}")
            failures += 1
            continue
        # The document is the root resource, so "#/components/..." references resolve in it.
        schema = dict(document, **{"$ref": f"#/components/messages/{name}/payload"})
        for error in Draft202012Validator(schema).iter_errors(payload):
            path = "/".join(str(p) for p in error.absolute_path)
            print(f"{name}: at /{path}: {error.message[:300]}")
            failures += 1
    print(f"the document and {len(seen)} payloads checked, {failures} findings")
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
