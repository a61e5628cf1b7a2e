"""`incv4 launch`: the pod's entrypoint, doing what `msrun --worker_num 8*N --local_worker_num 8 --master_addr ..
--node_rank i --join True` does, fed by Volcano's environment (topology.py): it plans the workers' arguments
(plan.py), then starts and supervises MindSpore's scheduler on node 0 and the local workers everywhere
(supervisor.py), each with the environment msrun would give it (environment.py).

Exit codes (trainer/contract.py), so Volcano policies can tell "retry" from "permanent":
  0    every worker finished.
  1    FAILURE (retryable): a worker or the scheduler crashed or was killed; the launcher stopped the others.
  2    USAGE (permanent): bad flags, recipe, data dir, metrics port or Volcano environment; also when the first
       failing worker exited 2. Nothing was started, or a worker refused its input.
  3    PEER_TIMEOUT (retryable): the cluster did not form within --cluster-timeout (peers never arrived, or the
       scheduler was unreachable).
  4    DIVERGED (permanent): the first failing worker exited 4 (too many non-finite losses).
  143  TERMINATED (retryable): the launcher got SIGTERM/SIGINT, forwarded SIGTERM to every worker, and every worker
       stopped (after saving a checkpoint) within --grace-period. If one did not, the launcher exits 1.
A worker that fails first with 143 (stopped by someone else's SIGTERM) makes the launcher exit 143 too.
With --max-restarts N (one node only; exit 2 with several) an outcome 1 or 3 first restarts the node's workers up to
N times (supervisor.py); the code above is the last attempt's.
With --bind-core (msrun's --bind_core=True) each worker runs on its own share of the pod's CPUs (cpu_binding.py).
"""
from __future__ import annotations

import os
import sys

import click

from incv4.trainer import contract, options
from incv4.trainer.contract import DEFAULT_LOCAL_WORKERS


@click.command("launch", context_settings={"ignore_unknown_options": True,
                                           "help_option_names": ["-h", "--help"]})
@options.config
@options.data_dir
@options.overrides
@click.option("--nodes", type=int, help="Node count [VC_WORKER_NUM].")
@click.option("--node-rank", type=int, help="This node's index [VC_TASK_INDEX].")
@click.option("--master-addr", help="Scheduler host [first of VC_WORKER_HOSTS, else /etc/volcano/worker.host].")
@click.option("--master-port", type=int, help=f"Scheduler port [{contract.MASTER_PORT}].")
@click.option("--local-workers", type=int,
              help=f"Worker processes on this node, one per NPU [{DEFAULT_LOCAL_WORKERS}].")
@click.option("--log-dir", help="Per-rank log files [<ckpt_save_dir>/logs].")
@options.cluster_timeout
@options.grace_period
@options.max_restarts
@options.metrics_port
@options.scale_lr
@click.option("--threads-per-worker", type=click.IntRange(min=0), default=0,
              help="CPU threads per worker (0 = cores / local workers).")
@options.compile_cache
@options.bind_core
@click.option("--worker-script", hidden=True, help="Run this Python file instead of the trainer (tests, benchmarks).")
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED)
def launch_command(config, data_dir, overrides, nodes, node_rank, master_addr, master_port, local_workers, log_dir,
                   cluster_timeout, grace_period, max_restarts, metrics_port, scale_lr, threads_per_worker,
                   compile_cache, bind_core, worker_script, train_args):
    """Start this pod's share of a data-parallel training job (the scheduler on node 0, the local workers
    everywhere) from Volcano's environment, and supervise it. Arguments after `--` go to every worker."""
    from incv4.trainer.launcher import plan
    from incv4.trainer.launcher.supervisor import restarts_refusal, run_node
    from incv4.trainer.launcher.topology import TopologyError, from_environment
    from incv4.trainer.metrics.exporter import POD_ADDR
    from incv4.trainer.recipe import RecipeError

    place = dict(nodes=nodes, node_rank=node_rank, master_addr=master_addr, master_port=master_port,
                 local_workers=local_workers)
    try:
        # Refused before the scheduler's name is resolved (that may wait --cluster-timeout): names are not resolved.
        node_count = from_environment(**place, resolver=str).nodes if max_restarts else 1
        if node_count > 1:
            raise TopologyError(restarts_refusal(node_count))
        topology = from_environment(**place, resolve_timeout=cluster_timeout)  # pod 0 may be late: wait for it
        # The recipe and the data are checked here, before the scheduler or any worker starts.
        args, recipe = plan.plan_worker_args(config, overrides, data_dir, topology.world_size, scale_lr, train_args,
                                             check_images=True)
    except (TopologyError, RecipeError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(getattr(err, "exit_code", contract.USAGE))  # PeerTimeoutError: 3, retryable
    cache = plan.compile_cache_dir(recipe, topology.world_size, args) if compile_cache else None
    with plan.shared_data_listing(recipe):  # the data was scanned and checked once here, for every local worker
        code = run_node(topology, plan.worker_command(args, worker_script),
                        log_dir or os.path.join(recipe.ckpt_save_dir, "logs"), cluster_timeout=cluster_timeout,
                        grace_period=grace_period, metrics_port=metrics_port, threads_per_worker=threads_per_worker,
                        compile_cache=cache, metrics_addr=POD_ADDR,  # Prometheus scrapes the pod's IP
                        max_restarts=max_restarts, bind_core=bind_core)
    sys.exit(code)


if __name__ == "__main__":
    launch_command(prog_name="incv4 launch")
