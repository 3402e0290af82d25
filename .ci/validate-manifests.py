"""Validates rendered Kubernetes manifests offline.

Usage: validate-manifests.py VERSION[,VERSION...] FILE...

Every object must pass kubernetes-validate's strict schema (unknown fields refused) for each
Kubernetes VERSION. Kinds that are not built in must have a schema in .ci/schemas/
(KIND.json, lower case); any other unknown kind fails.
"""

import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = pathlib.Path(__file__).parent / "schemas"


def validate(obj, versions):
    """Returns the problems of one object; empty when it is valid."""
    kind = obj.get("kind", "?")
    name = f"{kind}/{obj.get('metadata', {}).get('name', '?')}"
    custom = SCHEMAS / f"{kind.lower()}.json"
    if custom.exists():
        try:
            jsonschema.validate(obj, json.loads(custom.read_text()))
        except jsonschema.ValidationError as error:
            return [f"{name}: {error.message} at {list(error.absolute_path)}"]
        return []
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            return [f"{name}: no schema for {obj.get('apiVersion')} {kind}"]
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{name} (Kubernetes {version}): {error.message} at {list(error.path)}")
    return problems


def main():
    versions = sys.argv[1].split(",")
    failed = False
    for path in sys.argv[2:]:
        objects = [o for o in yaml.safe_load_all(pathlib.Path(path).read_text()) if o]
        problems = [p for o in objects for p in validate(o, versions)]
        for problem in problems:
            print(f"{path}: {problem}")
        print(f"{path}: {len(objects)} objects, {len(problems)} problems (Kubernetes {', '.join(versions)})")
        failed = failed or bool(problems) or not objects
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
