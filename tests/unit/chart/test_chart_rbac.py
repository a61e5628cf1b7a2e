"""The chart's opt-in RBAC Role (charts/incv4/templates/rbac.yaml), rendered by Helm's own engine: it grants
exactly the API calls the `incv4` commands it serves make (read from operator/cli_cluster.py and
operator/cluster.py), and with rbac.scope=release only on this release's objects, by name wherever Kubernetes
authorizes by name (k8s.io/apiserver pkg/endpoints/request/requestinfo.go: get/update/delete take the URL's name,
list/watch the name of a `metadata.name=` field selector, a subresource the URL's name, which for the pod proxy is
"<pod>:<port>"; create and label-selected lists have no name)."""
from __future__ import annotations

import ast
import pathlib

import pytest
from test_chart import find, kinds, render_chart, validate_strictly

from incv4.trainer import contract

pytest.importorskip("helm_python", reason="helm-python-sdk is a dev dependency: pip install -e '.[dev]'")

REPO = pathlib.Path(__file__).resolve().parents[3]
SUBJECTS = [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "ml-team"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": "ci"}]
# The commands a namespace-scoped Role serves, and the ones a release-scoped Role serves (no submit, no list: their
# create and list cannot be scoped by name).
NAMESPACE_COMMANDS = ("submit", "list_jobs", "status", "logs", "watch", "delete", "send")
RELEASE_COMMANDS = ("status", "logs", "watch", "delete", "send")  # `send`: suspend and resume
# submit's preflight (operator/doctor.py) also reads the claims the job mounts; a forbidden read is only a warning
# there, the namespace Role grants it so the check can tell.
PREFLIGHT_READS = {("get", "persistentvolumeclaims")}


@pytest.fixture(scope="module")
def chart():
    import helm_python as helm

    with helm.Chart.load(REPO / "charts" / "incv4") as loaded:
        yield loaded


def _functions(path: pathlib.Path) -> dict:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {t.id: node.value.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant)}
    return {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}, constants


def _api_call(node: ast.Call, constants: dict):
    """(verb, resource) when `node` is cluster.py's `_call/_json/_error(fn, verb, resource, ...)` or
    `_get_or_none(fn, resource, ...)` with constant arguments."""
    value = lambda a: a.value if isinstance(a, ast.Constant) else constants.get(getattr(a, "id", None))  # noqa: E731
    if node.func.attr in ("_call", "_json", "_error") and len(node.args) >= 3:
        verb, resource = value(node.args[1]), value(node.args[2])
        return (verb, resource) if isinstance(verb, str) and isinstance(resource, str) else None
    if node.func.attr == "_get_or_none" and len(node.args) >= 2 and isinstance(value(node.args[1]), str):
        return "get", value(node.args[1])
    return None


def _calls_of(commands) -> set:
    """(verb, resource) of every API call the command functions of cli_cluster.py reach through their own helpers
    and the Cluster methods they (and those methods) call."""
    cli, _ = _functions(REPO / "operator" / "cli_cluster.py")
    methods, constants = _functions(REPO / "operator" / "cluster.py")
    seen, calls = set(), set()
    todo = [("cli", name) for name in commands]
    while todo:
        where, name = todo.pop()
        if (where, name) in seen:
            continue
        seen.add((where, name))
        for node in ast.walk((cli if where == "cli" else methods)[name]):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Name) and where == "cli" and node.func.id in cli:
                todo.append(("cli", node.func.id))
            elif isinstance(node.func, ast.Attribute):
                call = _api_call(node, constants) if where == "cluster" else None
                if call:
                    calls.add(call)
                elif node.func.attr in methods:
                    todo.append(("cluster", node.func.attr))
    return calls


def _rules(role) -> dict:
    """{(verb, resource): resourceNames or None} of a Role."""
    out = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                name = f"{resource}.{group}" if group else resource
                for verb in rule["verbs"]:
                    assert (verb, name) not in out, f"{verb} {name} granted twice"
                    out[(verb, name)] = rule.get("resourceNames")
    return out


def test_the_call_table_is_read_from_the_source():
    calls = _calls_of(NAMESPACE_COMMANDS)
    assert {("create", "jobs.batch.volcano.sh"), ("watch", "jobs.batch.volcano.sh"), ("get", "pods/proxy"),
            ("create", "commands.bus.volcano.sh"), ("update", "configmaps")} <= calls, calls
    assert ("create", "jobs.batch.volcano.sh") not in _calls_of(RELEASE_COMMANDS)


def test_namespace_scope_grants_exactly_what_the_cli_uses_in_the_namespace(chart, shared_schemas):
    objects = render_chart(chart, {"rbac": {"create": True, "subjects": SUBJECTS}})
    role = find(objects, "Role")
    validate_strictly(role, shared_schemas)
    rules = _rules(role)
    assert set(rules) == _calls_of(NAMESPACE_COMMANDS) | PREFLIGHT_READS
    assert all(names is None for names in rules.values())
    assert not any("secrets" in resource or resource.endswith("/exec") or "*" in (verb, resource)
                   for verb, resource in rules)
    binding = find(objects, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [
        {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "Group", "name": "ml-team", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "ServiceAccount", "name": "ci", "namespace": "ci"}]
    assert render_chart(chart, {"rbac": {"create": True, "scope": "namespace", "subjects": SUBJECTS}}) == objects


@pytest.mark.parametrize("values, pods, port", [
    ({"nodes": 1}, ["run1-worker-0"], contract.METRICS_PORT),
    ({"nodes": 3, "name": "imagenet", "metricsPort": 9500}, ["imagenet-worker-0", "imagenet-worker-1",
                                                             "imagenet-worker-2"], 9500),
], ids=["one-node", "three-nodes-own-name-and-port"])
def test_release_scope_grants_only_this_releases_objects_by_name(chart, shared_schemas, values, pods, port):
    objects = render_chart(chart, {**values, "rbac": {"create": True, "scope": "release", "subjects": SUBJECTS}})
    role = find(objects, "Role")
    validate_strictly(role, shared_schemas)
    rules = _rules(role)
    assert set(rules) == _calls_of(RELEASE_COMMANDS)  # no submit, no list of runs
    job = values.get("name", "run1")
    assert pods[0].startswith(f"{job}-{contract.TASK_NAME}-")
    assert rules[("get", "jobs.batch.volcano.sh")] == [job]
    assert rules[("watch", "jobs.batch.volcano.sh")] == [job]  # `incv4 watch` sends fieldSelector metadata.name=job
    assert rules[("delete", "jobs.batch.volcano.sh")] == [job]
    assert rules[("get", "configmaps")] == rules[("delete", "configmaps")] == [f"{job}-recipe"]
    assert rules[("get", "pods/log")] == pods
    assert rules[("get", "pods/proxy")] == [f"{pod}:{port}" for pod in pods]
    # Kubernetes cannot name what create makes (generateName) nor a label-selected list: those stay unnamed
    assert rules[("create", "commands.bus.volcano.sh")] is None and rules[("list", "pods")] is None
    named = {key for key, names in rules.items() if names}
    assert named == set(rules) - {("create", "commands.bus.volcano.sh"), ("list", "pods")}


def test_the_role_is_opt_in_and_a_scope_other_than_the_two_is_refused(chart):
    assert {"Role", "RoleBinding"}.isdisjoint(kinds(render_chart(chart)))
    with pytest.raises(Exception, match="scope"):
        render_chart(chart, {"rbac": {"create": True, "scope": "cluster", "subjects": SUBJECTS}})
