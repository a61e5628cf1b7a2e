"""The cluster commands of `incv4`, modelled on kubectl and vcctl:
  render     the Volcano Job + recipe ConfigMap for a run (YAML, or -o json), no cluster needed
  doctor     whether the cluster can run that Job: one table row per check, each failing one with its fix
  submit     send them (--dry-run / --dry-run=client prints exactly what would be sent; --dry-run=server asks the
             API server to validate without persisting), after doctor's checks unless --skip-preflight
  list       vcctl's columns; -A for all namespaces
  status     phase, per-task counts, retries, conditions, reason/message, and training progress from the pods' metrics
  logs       a pod's log (--rank R or --pod P; -f, --tail N)
  watch      phase changes until a final phase; exit 0 only for Completed
  delete     the job and its recipe ConfigMap
  suspend / resume   Volcano Commands AbortJob / ResumeJob
The kubernetes client is imported only by the commands that talk to a cluster (through incv4.operator.cluster).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Optional

import click

from incv4.operator import job_view
from incv4.operator.cli_spec import build, spec_options
# cheap: the kubernetes client loads on first use
from incv4.operator.cluster import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, FINAL_PHASES, ClusterError
from incv4.operator.doctor import DEFAULT_VOLCANO_NAMESPACE
from incv4.trainer import contract
from incv4.trainer.contract import METRICS_PORT, METRICS_PORT_NAME, TASK_NAME


# ---- shared options ------------------------------------------------------------------------------------------------

def cluster_options(fn):
    """-n/--namespace, --kubeconfig, --context, --request-timeout: as kubectl (namespace defaults to the context's,
    else 'default')."""
    fn = click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_READ_TIMEOUT,
                      show_default=True, metavar="SECONDS",
                      help="How long to wait for the API server to answer a call (connecting: at most "
                      f"{DEFAULT_CONNECT_TIMEOUT:g} s of it).")(fn)
    fn = click.option("--context", help="kubeconfig context to use [current context].")(fn)
    fn = click.option("--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig [$KUBECONFIG, ~/.kube/config; "
                      "in-cluster config inside a pod].")(fn)
    fn = click.option("-n", "--namespace", help="Namespace [the context's, else default].")(fn)
    return fn


def output_option(*choices):
    return click.option("-o", "--output", type=click.Choice(choices), default=choices[0], show_default=True,
                        help="Output format.")


def _dump(objects, output: str) -> str:
    import yaml

    from incv4.trainer.recipe import SAFE_DUMPER

    if output == "json":
        body = objects[0] if len(objects) == 1 else {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        return json.dumps(body, indent=2)
    return "---\n".join(yaml.dump(o, Dumper=SAFE_DUMPER, sort_keys=False, default_flow_style=False)
                         for o in objects).rstrip("\n")


def _connect(namespace, kubeconfig, context, request_timeout):
    from incv4.operator.cluster import Cluster, Timeouts

    return Cluster(kubeconfig=kubeconfig, context=context, namespace=namespace,
                   timeouts=Timeouts(read=request_timeout))


# ---- render / submit ------------------------------------------------------------------------------------------------

@click.command()
@spec_options
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the rendered objects.")
@output_option("yaml", "json")
def render(namespace, output, **params):
    """Print the Volcano Job and the recipe ConfigMap of a run (no cluster needed)."""
    from incv4.operator.render import render_all

    job_spec, recipe_text = build(params, namespace)
    _warn_without_checkpoint_volume(job_spec)
    click.echo(_dump(render_all(job_spec, recipe_text), output))


def _warn_without_checkpoint_volume(job_spec) -> None:
    """A job that may restart but keeps its checkpoints in an emptyDir starts over at every restart."""
    if not job_spec.ckpt_pvc and job_spec.max_retry > 0:
        click.echo(f"warning: no --ckpt-pvc: checkpoints live in an emptyDir, so each of the {job_spec.max_retry} "
                   f"restarts (--max-retry) starts training over; give --ckpt-pvc", err=True)


def volcano_namespace_option(fn):
    return click.option("--volcano-namespace", default=DEFAULT_VOLCANO_NAMESPACE, show_default=True,
                        help="Namespace of Volcano's scheduler and its ConfigMap.")(fn)


@click.command()
@spec_options
@cluster_options
@volcano_namespace_option
@click.option("--with-monitoring", is_flag=True, help="Also require the Prometheus Operator CRDs (the chart's "
              "PodMonitor and PrometheusRule).")
def doctor(namespace, kubeconfig, context, request_timeout, volcano_namespace, with_monitoring, **params):
    """Check that the cluster can run the job these options describe (the same options as submit): one line per
    check, each failing one with its fix. Exit 0 when it can run, 2 when not."""
    from incv4.operator import doctor as doctor_mod

    job_spec, recipe_text = build(params, namespace)
    cluster = _connect(namespace, kubeconfig, context, request_timeout)
    rows = _preflight_rows(cluster, job_spec, recipe_text, namespace, volcano_namespace, with_monitoring)
    click.echo(doctor_mod.table(rows))
    bad = doctor_mod.failing(rows)
    if bad:
        click.echo(f"error: the job cannot run on this cluster: failing checks: "
                   f"{', '.join(row.name for row in bad)}", err=True)
        sys.exit(contract.USAGE)


def _preflight_rows(cluster, job_spec, recipe_text, namespace, volcano_namespace, with_monitoring=False) -> list:
    from incv4.operator import doctor as doctor_mod
    from incv4.operator.render import render_all

    if not namespace:  # the kubeconfig context's namespace (or the pod's, in-cluster)
        job_spec = dataclasses.replace(job_spec, namespace=cluster.namespace)
    return doctor_mod.preflight(cluster, render_all(job_spec, recipe_text), job_spec.namespace,
                                volcano_namespace=volcano_namespace, with_monitoring=with_monitoring)


def _run_preflight(cluster, job_spec, recipe_text, namespace, volcano_namespace) -> None:
    """submit's preflight: warnings as `warning:` lines; failing checks end submit (exit 2) in one line."""
    from incv4.operator import doctor as doctor_mod

    rows = _preflight_rows(cluster, job_spec, recipe_text, namespace, volcano_namespace)
    for row in rows:
        said = row.name == "pvc-ckpt" and not job_spec.ckpt_pvc  # the emptyDir warning is printed already
        if row.status == "warn" and not said:
            click.echo(f"warning: preflight: {row.name}: {row.detail}", err=True)
    if doctor_mod.failing(rows):
        click.echo(f"error: preflight failed: {doctor_mod.summary(rows)} (incv4 doctor shows every check; "
                   f"--skip-preflight submits anyway)", err=True)
        sys.exit(contract.USAGE)


@click.command()
@spec_options
@cluster_options
@click.option("--dry-run", type=click.Choice(["none", "client", "server"]), default="none", is_flag=False,
              flag_value="client", help="client (the default of a bare --dry-run): print what would be sent; "
              "server: let the API server validate it without persisting.")
@output_option("name", "yaml", "json")
@click.option("--skip-preflight", is_flag=True, help="Do not run incv4 doctor's checks before submitting.")
@volcano_namespace_option
def submit(namespace, kubeconfig, context, request_timeout, dry_run, output, skip_preflight, volcano_namespace,
           **params):
    """Create the run's recipe ConfigMap and Volcano Job, after incv4 doctor's checks (unless --skip-preflight)."""
    from incv4.operator.render import render_all

    job_spec, recipe_text = build(params, namespace)  # a bad spec or recipe fails before any connection
    _warn_without_checkpoint_volume(job_spec)
    if dry_run == "client":
        click.echo(_dump(render_all(job_spec, recipe_text), "json" if output == "json" else "yaml"))
        return
    cluster = _connect(namespace, kubeconfig, context, request_timeout)
    if not skip_preflight:
        _run_preflight(cluster, job_spec, recipe_text, namespace, volcano_namespace)
    if not namespace:  # the kubeconfig context's namespace (or the pod's, in-cluster)
        job_spec = dataclasses.replace(job_spec, namespace=cluster.namespace)
    configmap, job = render_all(job_spec, recipe_text)
    name = job_spec.name
    if dry_run == "server":
        sent = [cluster.create_configmap(configmap, name, dry_run=True), cluster.create_job(job, dry_run=True)]
        if output == "name":
            click.echo(f"configmap/{configmap['metadata']['name']} created (server dry run)")
            click.echo(f"job.batch.volcano.sh/{name} created (server dry run)")
        else:
            click.echo(_dump(sent, output))
        return
    # Refuse before touching the recipe ConfigMap of a job that is already there.
    if cluster.job_exists(name, job_spec.namespace):
        raise ClusterError(f"jobs.batch.volcano.sh {name!r} already exists in namespace {job_spec.namespace} "
                           f"(delete it first: incv4 delete {name} -n {job_spec.namespace})")
    created = _create_job_with_recipe(cluster, configmap, job)
    if output == "name":
        click.echo(f"configmap/{configmap['metadata']['name']} created")
        click.echo(f"job.batch.volcano.sh/{name} created")
    else:
        click.echo(_dump([created], output))


def _create_job_with_recipe(cluster, configmap: dict, job: dict) -> dict:
    """The recipe ConfigMap, then the Job; the recipe is then owned by the job, so Kubernetes' garbage collector
    removes it with the job. If the Job cannot be created, only the ConfigMap this submit created (its uid) is
    deleted again."""
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    recipe = cluster.create_configmap(configmap, name)
    try:
        created = cluster.create_job(job)
    except Exception:
        _quietly(lambda: cluster.delete_configmap(recipe["metadata"]["name"], namespace,
                                                  uid=recipe["metadata"].get("uid")))
        raise
    recipe["metadata"]["ownerReferences"] = [{
        "apiVersion": job["apiVersion"], "kind": "Job", "name": name, "uid": created["metadata"].get("uid"),
        "blockOwnerDeletion": False}]
    _quietly(lambda: cluster.replace_configmap(recipe))
    return created


def _quietly(fn):
    """Best-effort cleanup: report a failure on stderr, keep the original outcome."""
    try:
        fn()
    except Exception as err:  # noqa: BLE001
        click.echo(f"warning: {err}", err=True)


# ---- read commands -------------------------------------------------------------------------------------------------

@click.command("list")
@cluster_options
@click.option("-A", "--all-namespaces", is_flag=True, help="List jobs in every namespace.")
@output_option("table", "yaml", "json")
def list_jobs(namespace, kubeconfig, context, request_timeout, all_namespaces, output):
    """List Volcano jobs (vcctl's columns)."""
    cluster = _connect(namespace, kubeconfig, context, request_timeout)
    jobs = cluster.list_jobs(all_namespaces=all_namespaces)
    if output != "table":
        click.echo(_dump([{"apiVersion": "v1", "kind": "List", "items": jobs}], output))
        return
    if not jobs:
        where = "any namespace" if all_namespaces else f"namespace {cluster.namespace}"
        click.echo(f"No jobs found in {where}.", err=True)
        return
    columns = ["NAME", "AGE", "PHASE", "REPLICAS", "MIN", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "RETRIES"]
    if all_namespaces:
        columns.insert(0, "NAMESPACE")
    click.echo(job_view.table([job_view.job_row(j) for j in jobs], columns))


def _progress(cluster, job: dict, prometheus=None, previous=None):
    """(progress, None), or (None, one line saying why not). From Prometheus with --prometheus, else from every
    running pod's /metrics through the API server's pod proxy (each page carries its node's ranks). With the
    `previous` read, img/s is the rate between the two reads."""
    from incv4.operator import progress

    name, ns = job["metadata"]["name"], job["metadata"].get("namespace") or cluster.namespace
    try:
        if prometheus:
            return progress.from_prometheus(prometheus, ns, name), None
        pods = [p for p in cluster.list_job_pods(name, ns) if (p.get("status") or {}).get("phase") == "Running"]
        if not pods:
            return None, "progress: no running pod to read metrics from"
        pages, problem = [], None
        for pod in pods:
            try:
                pages.append(cluster.pod_metrics(pod["metadata"]["name"], _metrics_port(pod), ns))
            except Exception as err:  # noqa: BLE001 - one unreachable pod must not hide the others
                problem = err
        if not pages:
            raise problem
        return progress.from_metrics_text(pages, previous=previous), None
    except Exception as err:  # noqa: BLE001 - progress is a bonus; the job's status is still shown
        return None, f"progress: unavailable ({str(err).splitlines()[0] if str(err) else type(err).__name__})"


def _metrics_port(pod: dict) -> int:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == METRICS_PORT_NAME:
                return int(port["containerPort"])
    return METRICS_PORT


def _as_dict(progress) -> dict:
    """An incv4.operator.progress.Progress as a plain dict (its public fields)."""
    return progress.as_dict() if progress is not None else {}


@click.command()
@click.argument("name")
@cluster_options
@click.option("--prometheus", metavar="URL", help="Read progress from this Prometheus instead of the pods.")
@output_option("table", "yaml", "json")
def status(name, namespace, kubeconfig, context, request_timeout, prometheus, output):
    """Phase, per-task counts, retries, conditions and training progress of a job."""
    cluster = _connect(namespace, kubeconfig, context, request_timeout)
    job = cluster.get_job(name)
    progress, problem = (None, None)
    if job_view.phase(job) in ("Running", "Completing", "Restarting") or prometheus:
        progress, problem = _progress(cluster, job, prometheus)
        progress = _as_dict(progress) if progress is not None else None
    summary = job_view.status_summary(job, cluster.namespace, progress, _ended_pods(cluster, name, job))
    if problem:
        click.echo(problem, err=True)
    click.echo(job_view.status_text(summary) if output == "table" else _dump([summary], output))


@click.command()
@click.argument("name")
@cluster_options
@click.option("--rank", type=int, help="Node rank: the pod <name>-worker-<rank> [0].")
@click.option("--pod", help="A pod name instead of --rank.")
@click.option("-f", "--follow", is_flag=True, help="Stream the log until the container ends.")
@click.option("--tail", type=int, help="Only the last N lines.")
def logs(name, namespace, kubeconfig, context, request_timeout, rank, pod, follow, tail):
    """Print the log of one of a job's pods (the node's first rank is echoed there by `incv4 launch`)."""
    if rank is not None and pod:
        raise click.UsageError("give --rank or --pod, not both")
    if rank is not None and rank < 0:
        raise click.BadParameter("must be >= 0", param_hint="--rank")
    cluster = _connect(namespace, kubeconfig, context, request_timeout)
    pod = pod or f"{name}-{TASK_NAME}-{rank or 0}"
    for line in cluster.pod_logs(pod, follow=follow, tail=tail):
        click.echo(line)


@click.command()
@click.argument("name")
@cluster_options
@click.option("--interval", type=click.IntRange(min=1), default=60, show_default=True,
              help="Seconds between progress lines while the job runs.")
@click.option("--prometheus", metavar="URL", help="Read progress from this Prometheus instead of the pods.")
@click.option("--no-progress", is_flag=True, help="Only phase changes.")
def watch(name, namespace, kubeconfig, context, request_timeout, interval, prometheus, no_progress):
    """Follow a job's phase until it is final; exit 0 only if it Completed."""
    cluster = _connect(namespace, kubeconfig, context, request_timeout)
    last = previous = None
    for event, job in cluster.watch_job(name, timeout_seconds=interval, ticks=True):
        if event == "DELETED":
            click.echo(f"{_now()}  {name}  deleted", err=True)
            sys.exit(contract.FAILURE)
        phase = job_view.phase(job)
        row = job_view.job_row(job)
        if event != "TICK" and phase != last:
            click.echo(f"{_now()}  {name}  {phase}  running {row['RUNNING']}  succeeded {row['SUCCEEDED']}  "
                       f"failed {row['FAILED']}  retries {row['RETRIES']}")
            last = phase
        if phase in FINAL_PHASES:
            _end_watch(name, job, phase)
        if event == "TICK" and phase == "Running" and not no_progress:
            progress, problem = _progress(cluster, job, prometheus, previous)
            if progress is not None:
                previous = progress
                click.echo(f"{_now()}  {name}  {job_view.format_progress(_as_dict(progress))}")
            elif problem:
                click.echo(problem, err=True)


def _ended_pods(cluster, name: str, job: dict) -> Optional[list]:
    """The pods of a job that ended for good, whose exit codes say why; None otherwise (one list call saved)."""
    if job_view.phase(job) not in job_view.TERMINATED_PHASES:
        return None
    try:
        return cluster.list_job_pods(name)
    except ClusterError:  # the phase alone still says "failed permanently"
        return None


def _end_watch(name: str, job: dict, phase: str) -> None:
    """A final phase: say why a job did not complete, and exit 0 only for Completed."""
    state = (job.get("status") or {}).get("state") or {}
    if phase != "Completed" and (state.get("reason") or state.get("message")):
        click.echo(f"{name}: {phase}: {state.get('reason') or ''} {state.get('message') or ''}".rstrip(), err=True)
    sys.exit(contract.OK if phase == "Completed" else contract.FAILURE)


def _now() -> str:
    return time.strftime("%H:%M:%S")


# ---- job control ---------------------------------------------------------------------------------------------------

@click.command()
@click.argument("name")
@cluster_options
def delete(name, namespace, kubeconfig, context, request_timeout):
    """Delete a job (its pods go with it) and its recipe ConfigMap."""
    from incv4.operator.render import recipe_configmap_name

    cluster = _connect(namespace, kubeconfig, context, request_timeout)
    cluster.delete_job(name)
    click.echo(f"job.batch.volcano.sh/{name} deleted")
    recipe_configmap = recipe_configmap_name(name)
    outcome = cluster.delete_recipe_configmap(recipe_configmap, name)
    if outcome == "deleted":
        click.echo(f"configmap/{recipe_configmap} deleted")
    elif outcome == "kept":
        click.echo(f"warning: configmap/{recipe_configmap} kept: it does not carry incv4's labels for job "
                   f"{name!r}", err=True)


def _volcano_command(command_name: str, action: str, done: str, doc: str) -> click.Command:
    """A command that sends the job one Volcano bus Command (AbortJob, ResumeJob)."""
    @click.command(command_name, help=doc)
    @click.argument("name")
    @cluster_options
    def send(name, namespace, kubeconfig, context, request_timeout):
        command = _connect(namespace, kubeconfig, context, request_timeout).job_command(name, action)
        click.echo(f"job.batch.volcano.sh/{name} {done} (command {command['metadata'].get('name', action)})")
    return send


suspend = _volcano_command("suspend", "AbortJob", "suspended", "Abort a job's pods, keeping the job (Volcano AbortJob); "
                           "`incv4 resume` brings it back from its checkpoint.")
resume = _volcano_command("resume", "ResumeJob", "resumed", "Resume a suspended job (Volcano ResumeJob).")


# In `incv4 --help` order.
COMMANDS = (render, doctor, submit, list_jobs, status, logs, watch, delete, suspend, resume)


def register(group: click.Group) -> None:
    """Add the cluster commands to the top-level `incv4` group."""
    for command in COMMANDS:
        group.add_command(command)
