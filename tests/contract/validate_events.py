"""Validates Socket.IO payloads against the AsyncAPI document (tests/tests/realtime.rs).

Reads one JSON object from stdin: {"document": <the AsyncAPI document>, "seen": [[<message
name in components.messages>, <payload>], ...]}. Prints one line per payload that does not match
its message's schema (or names no message) and exits 1 if there is any; exits 0 otherwise.
"""

import json
import sys

from jsonschema import Draft202012Validator

def main() -> int:
    given = json.load(sys.stdin)
    document, seen = given["document"], given["seen"]
    messages = document["components"]["messages"]
    failures = 0
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
    print(f"{len(seen)} payloads checked, {failures} not matching")
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
