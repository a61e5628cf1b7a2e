"""`incv4 doctor` and `submit`'s preflight: read what a rendered Job needs from the cluster (through
incv4.operator.cluster, the only module talking to the API server) and run the checks of
incv4.operator.doctor_checks, one table row each.

A read the user may not do (403) makes its check a warning ("cannot tell"), not a failure: the job may still run.
Any other API error (unreachable, timeout) ends the command as every cluster command does (ClusterError, exit 1).
"""
from __future__ import annotations

from typing import Callable, Iterator

from incv4.operator import doctor_checks as checks
from incv4.operator.cluster import ClusterError
from incv4.operator.doctor_checks import FAIL, WARN, Check

DEFAULT_VOLCANO_NAMESPACE = "volcano-system"


def _guarded(name: str, run: Callable[[], Check]) -> Check:
    """The check, or a warning when a read it needs is forbidden to this user or the object read is malformed (a
    real API server validates what it stores; a proxy or a broken server may not)."""
    try:
        return run()
    except ClusterError as err:
        if err.status != 403:
            raise
        return Check(name, WARN, f"cannot tell: {err}", "ask for read access, or ask an admin to run incv4 doctor")
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
        return Check(name, WARN, f"cannot tell: the API server's answer is malformed ({type(err).__name__}: "
                                 f"{' '.join(str(err).split())[:120]})", "check the object with kubectl get -o yaml")


def _crds(cluster, names) -> dict:
    return {name: cluster.get_crd(name) for name in names}


def _pvc_checks(cluster, needs: checks.JobNeeds, namespace: str) -> Iterator[Check]:
    for volume, claim, read_only in needs.claims():
        def run(volume=volume, claim=claim, read_only=read_only):
            pvc = cluster.get_pvc(claim, namespace)
            class_name = ((pvc or {}).get("spec") or {}).get("storageClassName")
            pending = pvc is not None and ((pvc.get("status") or {}).get("phase") or "Pending") == "Pending"
            storage_class = cluster.get_storage_class(class_name) if pending and class_name else None
            return checks.check_pvc(volume, claim, read_only, pvc, storage_class, needs, namespace)
        yield _guarded(f"pvc-{volume}", run)


def preflight(cluster, objects: list, namespace: str, volcano_namespace: str = DEFAULT_VOLCANO_NAMESPACE,
              with_monitoring: bool = False) -> list:
    """Every check of the rendered `objects` against the cluster, in table order. `with_monitoring` also asks for
    the Prometheus Operator CRDs (the chart's PodMonitor and PrometheusRule) when render made no such object."""
    needs = checks.needs_of(objects)
    if with_monitoring:
        needs.monitoring_kinds = tuple(sorted(set(needs.monitoring_kinds) | {"PodMonitor", "PrometheusRule"}))
    rows = [
        _guarded("volcano-crds", lambda: checks.check_volcano_crds(_crds(cluster, checks.VOLCANO_CRDS))),
        _guarded("volcano-scheduler", lambda: checks.check_scheduler(
            cluster.list_pods(volcano_namespace, checks.SCHEDULER_POD_SELECTOR), volcano_namespace)),
        _guarded("queue", lambda: checks.check_queue(cluster.get_queue(needs.queue), needs)),
        _guarded("nodes", lambda: checks.check_nodes(cluster.list_nodes(), needs)),
        _guarded("npu-plugin", lambda: checks.check_npu_plugin(
            cluster.get_configmap(checks.SCHEDULER_CONFIGMAP, volcano_namespace) if needs.npu_resource else None,
            needs, volcano_namespace)),
        _guarded("prometheus-operator", lambda: checks.check_monitoring(
            _crds(cluster, [checks.MONITORING_CRDS[k] for k in needs.monitoring_kinds]), needs.monitoring_kinds)),
    ]
    rows += list(_pvc_checks(cluster, needs, namespace))
    emptydir = checks.check_checkpoints_volume(needs)
    if emptydir is not None:
        rows.append(emptydir)
    rows.append(_guarded("pod-security", lambda: checks.check_pod_security(
        cluster.get_namespace(namespace), needs, namespace)))
    return rows


def failing(rows: list) -> list:
    return [row for row in rows if row.status == FAIL]


def table(rows: list) -> str:
    """One line per check: name, result, what was found and, for a failing or warning one, its fix."""
    width = max([len("CHECK")] + [len(row.name) for row in rows])
    lines = [f"{'CHECK'.ljust(width)}  RESULT  DETAIL"]
    for row in rows:
        fix = f" -> fix: {row.fix}" if row.fix and row.status in (FAIL, WARN) else ""
        lines.append(f"{row.name.ljust(width)}  {row.status.ljust(6)}  {row.detail}{fix}")
    return "\n".join(lines)


def summary(rows: list) -> str:
    """One line: the failing check with what it found and its fix; with several, their names and the first."""
    bad = failing(rows)
    first = f"{bad[0].name}: {bad[0].detail} (fix: {bad[0].fix})"
    if len(bad) == 1:
        return first
    return f"{len(bad)} checks fail ({', '.join(row.name for row in bad)}); first {first}"
