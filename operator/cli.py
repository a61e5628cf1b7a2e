"""The `incv4` command line (click). Operator commands live here; the trainer's commands (train, launch, validate,
demo-data, demo) are defined in `incv4.trainer.cli` and registered below. Nothing heavy is imported at start-up:
`incv4 render` must stay fast and never import MindSpore; the kubernetes client is imported only by commands that
talk to a cluster (through incv4.operator.cluster).

Operator commands, modelled on kubectl and vcctl:
  render     the Volcano Job + recipe ConfigMap for a run (YAML, or -o json), no cluster needed
  submit     send them (--dry-run / --dry-run=client prints exactly what would be sent; --dry-run=server asks the
             API server to validate without persisting)
  list       vcctl's columns; -A for all namespaces
  status     phase, per-task counts, retries, conditions, reason/message, and training progress from the pods' metrics
  logs       a pod's log (--rank R or --pod P; -f, --tail N)
  watch      phase changes until a final phase; exit 0 only for Completed
  delete     the job and its recipe ConfigMap
  suspend / resume   Volcano Commands AbortJob / ResumeJob
Results go to stdout, diagnostics to stderr; exit 0 (ok), 1 (failure), 2 (usage: bad flags, recipe, spec, or a
request the server rejected as invalid). No traceback for user errors.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import time

import click

from incv4.operator.cluster import FINAL_PHASES, ClusterError  # cheap: the kubernetes client loads on first use
from incv4.operator.spec import DEFAULT_TERMINATION_GRACE_PERIOD, SpecError
from incv4.trainer.contract import LAUNCH_GRACE_PERIOD, METRICS_PORT, METRICS_PORT_NAME, TASK_NAME
from incv4.trainer.recipe import RecipeError

# Exit codes, as kubectl and click use them: 0 success, 1 failure, 2 usage (bad flags, bad recipe, bad spec).
EXIT_FAILURE = 1
EXIT_USAGE = 2


class Incv4Group(click.Group):
    """Turns user errors into one line on stderr and the right exit code, never a traceback. Commands with heavy
    modules can be registered lazily: their module is imported only when that command runs (or help lists it),
    so `incv4 render` does not pay for the launcher's imports."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = {}  # name -> (module, attribute)

    def add_lazy_command(self, name: str, module: str, attribute: str) -> None:
        self.lazy_commands[name] = (module, attribute)

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, name):
        if name in self.lazy_commands and name not in self.commands:
            import importlib

            module, attribute = self.lazy_commands[name]
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (RecipeError, SpecError) as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(EXIT_USAGE)
        except ClusterError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=Incv4Group, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Train InceptionV4 on Kubernetes with Volcano and Ascend NPUs, and watch it."""


# ---- shared options ------------------------------------------------------------------------------------------------

def cluster_options(fn):
    """-n/--namespace, --kubeconfig, --context: as kubectl (namespace defaults to the context's, else 'default')."""
    fn = click.option("--context", help="kubeconfig context to use [current context].")(fn)
    fn = click.option("--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig [$KUBECONFIG, ~/.kube/config; "
                      "in-cluster config inside a pod].")(fn)
    fn = click.option("-n", "--namespace", help="Namespace [the context's, else default].")(fn)
    return fn


def output_option(*choices):
    return click.option("-o", "--output", type=click.Choice(choices), default=choices[0], show_default=True,
                        help="Output format.")


def spec_options(fn):
    """The JobSpec's flags, shared by render and submit."""
    options = [
        click.option("--name", help="Job name (a DNS-1035 label, short enough for '<name>-worker-<i>' pod names)."),
        click.option("--image", help="Container image with incv4 and MindSpore (e.g. registry/incv4:0.1.0)."),
        click.option("-c", "--recipe", "--config", "recipe", type=click.Path(dir_okay=False),
                     help="Recipe YAML (MindCV keys) [the shipped inception_v4_ascend.yaml]."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a recipe key, passed to `incv4 launch --set` (repeatable)."),
        click.option("--nodes", type=int, default=1, show_default=True, help="Nodes (pods), gang-scheduled."),
        click.option("--npus", type=int, default=8, show_default=True, help="NPUs per node: 1, 2, 4 or 8."),
        click.option("--chip", default="910", show_default=True,
                     help="910 | 910B (huawei.com/Ascend910) | cpu (no NPUs, for a smoke run)."),
        click.option("--dataset-pvc", help="PVC holding the ImageFolder dataset (mounted read-only at /data)."),
        click.option("--dataset-host-path", help="Host directory with the dataset instead of a PVC (read-only)."),
        click.option("--ckpt-pvc", help="PVC for checkpoints (/ckpt) [an emptyDir: lost when the job restarts]."),
        click.option("--queue", default="default", show_default=True, help="Volcano queue."),
        click.option("--priority-class", help="priorityClassName."),
        click.option("--max-retry", type=int, default=3, show_default=True, help="Job restarts before it fails."),
        click.option("--ttl", type=int, help="ttlSecondsAfterFinished."),
        click.option("--node-selector", multiple=True, metavar="K=V", help="Extra node selector (repeatable)."),
        click.option("--toleration", multiple=True, metavar="KEY[=VALUE][:EFFECT]",
                     help="Tolerate a taint, kubectl-taint style (repeatable)."),
        click.option("--cpu", help="CPU request per pod (e.g. 96)."),
        click.option("--memory", help="Memory request per pod (e.g. 512Gi)."),
        click.option("--shm-size", default="16Gi", show_default=True, help="/dev/shm size (memory emptyDir)."),
        click.option("--metrics-port", type=int, default=METRICS_PORT, show_default=True, help="Pod port of /metrics."),
        click.option("--env", multiple=True, metavar="K=V", help="Extra environment variable (repeatable)."),
        click.option("--run-as-user", type=int, default=1000, show_default=True,
                     help="Non-root UID (HwHiAiUser in Ascend images)."),
        click.option("--run-as-group", type=int, default=1000, show_default=True,
                     help="GID; must be allowed to use /dev/davinci* on the nodes."),
        click.option("--termination-grace-period", type=int, default=DEFAULT_TERMINATION_GRACE_PERIOD,
                     show_default=True, metavar="SECONDS",
                     help="Pod terminationGracePeriodSeconds: SIGTERM to SIGKILL; must exceed the "
                          f"{LAUNCH_GRACE_PERIOD} s incv4 launch gives workers to save a checkpoint."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _build(params: dict, namespace):
    """Flags -> (JobSpec, recipe text), the recipe validated with its overrides before anything is rendered."""
    from incv4.operator import spec as spec_mod
    from incv4.trainer import recipe as recipe_mod

    path = params["recipe"] or recipe_mod.shipped_path("inception_v4_ascend.yaml")
    recipe_mod.load(path, params["overrides"])  # raises RecipeError naming the key
    with open(path, encoding="utf-8") as fh:
        recipe_text = fh.read()
    job_spec = spec_mod.JobSpec(
        name=params["name"], image=params["image"], namespace=namespace or "default",
        nodes=params["nodes"], npus=params["npus"], chip=params["chip"], recipe=params["recipe"] or
        "inception_v4_ascend.yaml", recipe_overrides=tuple(params["overrides"]),
        dataset_pvc=params["dataset_pvc"], dataset_host_path=params["dataset_host_path"],
        ckpt_pvc=params["ckpt_pvc"], queue=params["queue"], priority_class=params["priority_class"],
        max_retry=params["max_retry"], ttl_seconds=params["ttl"],
        node_selector=spec_mod.parse_pairs("node_selector", params["node_selector"]),
        tolerations=tuple(spec_mod.parse_toleration(t) for t in params["toleration"]),
        cpu=params["cpu"], memory=params["memory"], shm_size=params["shm_size"],
        metrics_port=params["metrics_port"], env=spec_mod.parse_pairs("env", params["env"]),
        run_as_user=params["run_as_user"], run_as_group=params["run_as_group"],
        termination_grace_period=params["termination_grace_period"])
    return job_spec, recipe_text


def _dump(objects, output: str) -> str:
    import yaml

    from incv4.trainer.recipe import SAFE_DUMPER

    if output == "json":
        body = objects[0] if len(objects) == 1 else {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        return json.dumps(body, indent=2)
    return "---\n".join(yaml.dump(o, Dumper=SAFE_DUMPER, sort_keys=False, default_flow_style=False)
                         for o in objects).rstrip("\n")


def _connect(namespace, kubeconfig, context):
    from incv4.operator.cluster import Cluster

    return Cluster(kubeconfig=kubeconfig, context=context, namespace=namespace)


# ---- render / submit ------------------------------------------------------------------------------------------------

@main.command()
@spec_options
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the rendered objects.")
@output_option("yaml", "json")
def render(namespace, output, **params):
    """Print the Volcano Job and the recipe ConfigMap of a run (no cluster needed)."""
    from incv4.operator.render import render_all

    job_spec, recipe_text = _build(params, namespace)
    click.echo(_dump(render_all(job_spec, recipe_text), output))


@main.command()
@spec_options
@cluster_options
@click.option("--dry-run", type=click.Choice(["none", "client", "server"]), default="none", is_flag=False,
              flag_value="client", help="client (the default of a bare --dry-run): print what would be sent; "
              "server: let the API server validate it without persisting.")
@output_option("name", "yaml", "json")
def submit(namespace, kubeconfig, context, dry_run, output, **params):
    """Create the run's recipe ConfigMap and Volcano Job."""
    from incv4.operator.render import render_all

    job_spec, recipe_text = _build(params, namespace)  # a bad spec or recipe fails before any connection
    if dry_run == "client":
        click.echo(_dump(render_all(job_spec, recipe_text), "json" if output == "json" else "yaml"))
        return
    cluster = _connect(namespace, kubeconfig, context)
    if not namespace:  # the kubeconfig context's namespace (or the pod's, in-cluster)
        job_spec = dataclasses.replace(job_spec, namespace=cluster.namespace)
    configmap, job = render_all(job_spec, recipe_text)
    name = job_spec.name
    if dry_run == "server":
        sent = [cluster.apply_configmap(configmap, dry_run=True), cluster.create_job(job, dry_run=True)]
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
    cluster.apply_configmap(configmap)
    try:
        created = cluster.create_job(job)
    except Exception:
        _quietly(lambda: cluster.delete_configmap(configmap["metadata"]["name"], job_spec.namespace))
        raise
    # Let Kubernetes' garbage collector remove the recipe with the job (also after ttlSecondsAfterFinished).
    configmap["metadata"]["ownerReferences"] = [{
        "apiVersion": job["apiVersion"], "kind": "Job", "name": name, "uid": created["metadata"]["uid"],
        "blockOwnerDeletion": False}]
    _quietly(lambda: cluster.replace_configmap(configmap))
    if output == "name":
        click.echo(f"configmap/{configmap['metadata']['name']} created")
        click.echo(f"job.batch.volcano.sh/{name} created")
    else:
        click.echo(_dump([created], output))


def _quietly(fn):
    """Best-effort cleanup: report a failure on stderr, keep the original outcome."""
    try:
        fn()
    except Exception as err:  # noqa: BLE001
        click.echo(f"warning: {err}", err=True)


# ---- read commands ----------------------------------------------------------------------------------------------------

def _age(timestamp, now=None) -> str:
    """kubectl-style age: 45s, 12m, 5h, 3d."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    seconds = max(0, int(((now or datetime.datetime.now(datetime.timezone.utc)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _phase(job: dict) -> str:
    return ((job.get("status") or {}).get("state") or {}).get("phase") or "Pending"


def job_row(job: dict) -> dict:
    status = job.get("status") or {}
    spec = job.get("spec") or {}
    return {
        "NAMESPACE": job["metadata"].get("namespace", ""),
        "NAME": job["metadata"]["name"],
        "AGE": _age(job["metadata"].get("creationTimestamp")),
        "PHASE": _phase(job),
        "REPLICAS": sum(int(t.get("replicas", 1)) for t in spec.get("tasks") or []),
        "MIN": status.get("minAvailable", spec.get("minAvailable", 0)),
        "PENDING": status.get("pending", 0),
        "RUNNING": status.get("running", 0),
        "SUCCEEDED": status.get("succeeded", 0),
        "FAILED": status.get("failed", 0),
        "RETRIES": status.get("retryCount", 0),
    }


def _table(rows, columns) -> str:
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns}
    lines = ["   ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["   ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


@main.command("list")
@cluster_options
@click.option("-A", "--all-namespaces", is_flag=True, help="List jobs in every namespace.")
@output_option("table", "yaml", "json")
def list_jobs(namespace, kubeconfig, context, all_namespaces, output):
    """List Volcano jobs (vcctl's columns)."""
    cluster = _connect(namespace, kubeconfig, context)
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
    click.echo(_table([job_row(j) for j in jobs], columns))


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


def _format_progress(progress: dict) -> str:
    """One line: step 25/100  epoch 2  img/s 7.9  loss 2.0000  top-1 0.3750  ETA 0:00:37 ('-' where unknown)."""
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    step = progress.get("step")
    if step is not None and progress.get("planned_steps"):
        step = f"{step}/{progress['planned_steps']}"
    eta = progress.get("eta_seconds")
    eta = str(datetime.timedelta(seconds=int(eta))) if eta is not None else None
    return "  ".join([f"step {fmt(step, '')}", f"epoch {fmt(progress.get('epoch'), '')}",
                      f"img/s {fmt(progress.get('images_per_second'), '.1f')}",
                      f"loss {fmt(progress.get('loss'), '.4f')}", f"top-1 {fmt(progress.get('top1'), '.4f')}",
                      f"ETA {fmt(eta, '')}"])


@main.command()
@click.argument("name")
@cluster_options
@click.option("--prometheus", metavar="URL", help="Read progress from this Prometheus instead of the pods.")
@output_option("table", "yaml", "json")
def status(name, namespace, kubeconfig, context, prometheus, output):
    """Phase, per-task counts, retries, conditions and training progress of a job."""
    cluster = _connect(namespace, kubeconfig, context)
    job = cluster.get_job(name)
    st = job.get("status") or {}
    state = st.get("state") or {}
    progress, problem = (None, None)
    if _phase(job) in ("Running", "Completing", "Restarting") or prometheus:
        progress, problem = _progress(cluster, job, prometheus)
        progress = _as_dict(progress) if progress is not None else None
    summary = {
        "name": name, "namespace": job["metadata"].get("namespace", cluster.namespace), "phase": _phase(job),
        "reason": state.get("reason"), "message": state.get("message"),
        "minAvailable": st.get("minAvailable"), "retries": st.get("retryCount", 0),
        "maxRetry": (job.get("spec") or {}).get("maxRetry"),
        "counts": {k: st.get(k, 0) for k in ("pending", "running", "succeeded", "failed", "terminating", "unknown")},
        "tasks": st.get("taskStatusCount") or {}, "conditions": st.get("conditions") or [],
        "progress": progress,
    }
    if problem:
        click.echo(problem, err=True)
    if output != "table":
        click.echo(_dump([summary], output))
        return
    lines = [f"Name:        {name}", f"Namespace:   {summary['namespace']}", f"Phase:       {summary['phase']}"]
    if summary["reason"] or summary["message"]:
        lines.append(f"Reason:      {summary['reason'] or '-'}: {summary['message'] or ''}".rstrip())
    lines.append(f"Min:         {summary['minAvailable']}")
    lines.append(f"Retries:     {summary['retries']}" + (f" of {summary['maxRetry']}" if summary["maxRetry"] is not None
                                                        else ""))
    lines.append("Pods:        " + "  ".join(f"{k} {v}" for k, v in summary["counts"].items()))
    for task, counts in sorted(summary["tasks"].items()):
        phases = (counts or {}).get("phase") or {}
        lines.append(f"Task {task}:".ljust(13) + ("  ".join(f"{p} {n}" for p, n in sorted(phases.items())) or "-"))
    if summary["conditions"]:
        lines.append("Conditions:")
        lines += [f"  {c.get('lastTransitionTime', '')}  {c.get('status', '')}" for c in summary["conditions"]]
    if progress:
        lines.append(f"Progress:    {_format_progress(progress)}")
    click.echo("\n".join(lines))


@main.command()
@click.argument("name")
@cluster_options
@click.option("--rank", type=int, help="Node rank: the pod <name>-worker-<rank> [0].")
@click.option("--pod", help="A pod name instead of --rank.")
@click.option("-f", "--follow", is_flag=True, help="Stream the log until the container ends.")
@click.option("--tail", type=int, help="Only the last N lines.")
def logs(name, namespace, kubeconfig, context, rank, pod, follow, tail):
    """Print the log of one of a job's pods (the node's first rank is echoed there by `incv4 launch`)."""
    if rank is not None and pod:
        raise click.UsageError("give --rank or --pod, not both")
    if rank is not None and rank < 0:
        raise click.BadParameter("must be >= 0", param_hint="--rank")
    cluster = _connect(namespace, kubeconfig, context)
    pod = pod or f"{name}-{TASK_NAME}-{rank or 0}"
    for line in cluster.pod_logs(pod, follow=follow, tail=tail):
        click.echo(line)


@main.command()
@click.argument("name")
@cluster_options
@click.option("--interval", type=click.IntRange(min=1), default=60, show_default=True,
              help="Seconds between progress lines while the job runs.")
@click.option("--prometheus", metavar="URL", help="Read progress from this Prometheus instead of the pods.")
@click.option("--no-progress", is_flag=True, help="Only phase changes.")
def watch(name, namespace, kubeconfig, context, interval, prometheus, no_progress):
    """Follow a job's phase until it is final; exit 0 only if it Completed."""
    cluster = _connect(namespace, kubeconfig, context)
    last = previous = None
    for event, job in cluster.watch_job(name, timeout_seconds=interval, ticks=True):
        if event == "DELETED":
            click.echo(f"{_now()}  {name}  deleted", err=True)
            sys.exit(EXIT_FAILURE)
        phase = _phase(job)
        row = job_row(job)
        if event != "TICK" and phase != last:
            click.echo(f"{_now()}  {name}  {phase}  running {row['RUNNING']}  succeeded {row['SUCCEEDED']}  "
                       f"failed {row['FAILED']}  retries {row['RETRIES']}")
            last = phase
        if phase in FINAL_PHASES:
            state = (job.get("status") or {}).get("state") or {}
            if phase != "Completed" and (state.get("reason") or state.get("message")):
                click.echo(f"{name}: {phase}: {state.get('reason') or ''} {state.get('message') or ''}".rstrip(),
                           err=True)
            sys.exit(0 if phase == "Completed" else EXIT_FAILURE)
        if event == "TICK" and phase == "Running" and not no_progress:
            progress, problem = _progress(cluster, job, prometheus, previous)
            if progress is not None:
                previous = progress
                click.echo(f"{_now()}  {name}  {_format_progress(_as_dict(progress))}")
            elif problem:
                click.echo(problem, err=True)


def _now() -> str:
    return time.strftime("%H:%M:%S")


@main.command()
@click.argument("name")
@cluster_options
def delete(name, namespace, kubeconfig, context):
    """Delete a job (its pods go with it) and its recipe ConfigMap."""
    from incv4.operator.render import recipe_configmap_name

    cluster = _connect(namespace, kubeconfig, context)
    cluster.delete_job(name)
    click.echo(f"job.batch.volcano.sh/{name} deleted")
    recipe_configmap = recipe_configmap_name(name)
    if cluster.delete_configmap(recipe_configmap):
        click.echo(f"configmap/{recipe_configmap} deleted")


@main.command()
@click.argument("name")
@cluster_options
def suspend(name, namespace, kubeconfig, context):
    """Abort a job's pods, keeping the job (Volcano AbortJob); `incv4 resume` brings it back from its checkpoint."""
    command = _connect(namespace, kubeconfig, context).job_command(name, "AbortJob")
    click.echo(f"job.batch.volcano.sh/{name} suspended (command {command['metadata'].get('name', 'AbortJob')})")


@main.command()
@click.argument("name")
@cluster_options
def resume(name, namespace, kubeconfig, context):
    """Resume a suspended job (Volcano ResumeJob)."""
    command = _connect(namespace, kubeconfig, context).job_command(name, "ResumeJob")
    click.echo(f"job.batch.volcano.sh/{name} resumed (command {command['metadata'].get('name', 'ResumeJob')})")


def _register_trainer_commands():
    from incv4.trainer import cli as trainer_cli

    trainer_cli.register(main)


_register_trainer_commands()

if __name__ == "__main__":  # `python -m incv4.operator.cli`, as the console script
    main()
