"""Strict schema validation of rendered Kubernetes objects, as `kubeconform -strict` does.

    validate_object(obj, schemas_dir)   # raises ObjectInvalid with one clear line; returns None when valid

- Built-in kinds (ConfigMap, Service, ...) go through kubernetes-validate in strict mode for KUBERNETES_VERSION.
- Custom kinds (Volcano Job, PodGroup, Queue; Prometheus Operator PodMonitor, ServiceMonitor, PrometheusRule) go
  through their CRD's openAPIV3Schema from `schemas_dir` (../shared/schemas), made strict: wherever a schema lists
  `properties` and neither preserves unknown fields nor allows additionalProperties, no other field is accepted. A
  plain JSON-schema check would accept a typo such as `minAvailble`, which the API server silently drops.
- A custom object's metadata is checked as a strict v1 ObjectMeta, and each Volcano task's `template` as a strict
  v1 PodTemplate (the CRD's copy of PodSpec may lag the cluster's).
Used by the operator's tests and the chart's tests alike.
"""
from __future__ import annotations

import copy
import functools
import pathlib

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33.0"


class ObjectInvalid(AssertionError):
    """A rendered object does not validate; the message names the object and the field."""


def validate_object(obj: dict, schemas_dir) -> None:
    """Validate one object strictly; raise ObjectInvalid naming the object, the field path and the problem."""
    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        raise ObjectInvalid(f"not a Kubernetes object (needs apiVersion and kind): {str(obj)[:80]}")
    what = f"{obj['kind']}/{(obj.get('metadata') or {}).get('name', '?')}"
    group = obj["apiVersion"].rpartition("/")[0]
    crd = _crd_schemas(str(schemas_dir)).get((group, obj["apiVersion"].rpartition("/")[2], obj["kind"]))
    if crd is None:
        if "." in group and not group.endswith(".k8s.io"):  # *.k8s.io groups are Kubernetes' own
            raise ObjectInvalid(f"{what}: no CRD schema for {obj['apiVersion']} {obj['kind']} in {schemas_dir}")
        _validate_builtin(obj, what)
        return
    _validate_builtin({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata", {})}, what)
    errors = sorted(jsonschema.Draft7Validator(crd).iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        path = ".".join(str(p) for p in err.absolute_path) or "(root)"
        raise ObjectInvalid(f"{what}: {path}: {err.message}")
    if obj["kind"] == "Job" and group == "batch.volcano.sh":
        for task in (obj.get("spec") or {}).get("tasks") or []:
            template = {"apiVersion": "v1", "kind": "PodTemplate",
                        "metadata": {"name": f"{what.split('/')[1]}-{task.get('name', 'task')}"},
                        "template": task.get("template", {})}
            _validate_builtin(template, f"{what} task {task.get('name')!r} template")


def _validate_builtin(obj: dict, what: str) -> None:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path) or "(root)"
        raise ObjectInvalid(f"{what}: {path}: {err.message}") from None
    except kubernetes_validate.SchemaNotFoundError as err:
        raise ObjectInvalid(f"{what}: no Kubernetes {KUBERNETES_VERSION} schema for it ({err})") from None


@functools.lru_cache(maxsize=None)
def _crd_schemas(schemas_dir: str) -> dict:
    """(group, version, kind) -> strict JSON schema, from every CRD YAML under schemas_dir."""
    out = {}
    for path in sorted(pathlib.Path(schemas_dir).rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                out[(group, version["name"], kind)] = strict(schema)
    return out


def strict(schema):
    """Forbid unknown fields where a schema lists its properties, as the API server's pruning would drop them."""
    if isinstance(schema, dict):
        for value in schema.values():
            strict(value)
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        for item in schema:
            strict(item)
    return schema
