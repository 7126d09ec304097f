"""Validate rendered Kubernetes manifests offline; exit 1 on any problem.

    python3 deploy/kubernetes/validate.py RENDERED.yaml...

Every document must validate strictly (an unknown field is an error, as it is for `kubectl apply`, whose
server-side field validation is Strict):
- Kubernetes' own kinds against the API's OpenAPI schemas that kubernetes-validate (PyPI) ships, for the oldest
  Kubernetes these manifests support and for the newest the validator knows;
- ServiceMonitor (a CustomResourceDefinition of the Prometheus operator, so in no Kubernetes schema) against the
  operator's schema as published in cloudcoil-models-prometheus-operator (PyPI): pydantic models generated from
  the operator's CRDs, turned into a JSON schema here, with unknown fields forbidden.
A kind that neither knows is an error, not a warning (kubernetes-validate's own command line only warns, which
would let a misspelt kind or apiVersion pass).
"""

import sys

import jsonschema
import kubernetes_validate.utils as kv
import yaml

# 1.30: the preStop `sleep` action the manifests use is on by default from 1.30 (beta; alpha in 1.29).
OLDEST_SUPPORTED = "1.30.0"
VERSIONS = [OLDEST_SUPPORTED, kv.latest_version()]


def forbid_unknown_fields(schema):
    """Every object schema that lists its properties rejects others (as the API server does for a CRD)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            forbid_unknown_fields(value)
    elif isinstance(schema, list):
        for value in schema:
            forbid_unknown_fields(value)
    return schema


def custom_resource_validators():
    """(apiVersion, kind) -> a JSON-schema validator, for the custom resources the manifests use."""
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    schema = forbid_unknown_fields(ServiceMonitor.model_json_schema(by_alias=True))
    # The models accept null for every optional field; required fields stay required.
    return {("monitoring.coreos.com/v1", "ServiceMonitor"): jsonschema.Draft202012Validator(schema)}


def problems(document, custom):
    """(what the document was checked against, its problems, each a line: empty when it is valid)."""
    if not isinstance(document, dict) or "kind" not in document or "apiVersion" not in document:
        return "nothing", ["not a Kubernetes object (no apiVersion/kind)"]
    key = (document["apiVersion"], document["kind"])
    if key in custom:
        found = [f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in custom[key].iter_errors(document)]
        return "the Prometheus operator's schema", found
    found = []
    for version in VERSIONS:
        try:
            kv.validate(document, version, strict=True)
        except kv.SchemaNotFoundError:
            return "nothing", [
                f"no schema for {key[1]} {key[0]}: neither a Kubernetes kind nor a custom resource known here"
            ]
        except kv.ValidationError as e:
            found.append(f"Kubernetes {version}: {'.'.join(map(str, e.path)) or '(top)'}: {e.message}")
    return f"Kubernetes {' and '.join(VERSIONS)}", found


def main(paths):
    custom = custom_resource_validators()
    failed = 0
    for path in paths:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d is not None]
        if not documents:
            print(f"FAIL {path}: no documents")
            failed += 1
        for document in documents:
            name = (
                f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"
                if isinstance(document, dict)
                else repr(document)[:40]
            )
            against, found = problems(document, custom)
            for problem in found:
                print(f"FAIL {path}: {name}: {problem}")
            if not found:
                print(f"ok   {path}: {name} (against {against})")
            failed += bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
