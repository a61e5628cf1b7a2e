"""Where this pod sits in the training job: Volcano's `env` and `svc` job plugins -> node rank, node count, the
scheduler's address. Pure Python (no MindSpore), so the launcher can fail fast on a bad environment.

What Volcano gives each pod (volcano-sh/volcano pkg/controllers/job/plugins):
- env plugin: VC_TASK_INDEX and VK_TASK_INDEX (same value), the pod's index inside its task;
- svc plugin, for a task named `worker`: VC_WORKER_HOSTS (comma-separated `<job>-worker-<i>.<job>` names),
  VC_WORKER_NUM (their count), and the same hosts one per line in /etc/volcano/worker.host.
Node 0 (the first host) runs MindSpore's scheduler; explicit flags override every value read here.

The scheduler's name resolves only once pod 0 exists and the svc plugin's headless Service publishes it (with
--publish-not-ready-addresses: before readiness, not before the pod is created). Pod 0 can be late for a reason a
restart cures (a slow volume attach, an image pull), so a name that never resolves within the cluster timeout is
PeerTimeoutError (exit 3, PEER_TIMEOUT: retryable), not a usage error.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from incv4.trainer.contract import DEFAULT_LOCAL_WORKERS, MASTER_PORT, PEER_TIMEOUT, TASK_NAME, USAGE

HOSTS_DIR = "/etc/volcano"  # where the svc plugin mounts its ConfigMap
LOOPBACK = "127.0.0.1"
# How long to wait for the scheduler's name by default: --cluster-timeout's default (trainer/options.py).
DEFAULT_RESOLVE_TIMEOUT = 600.0


class TopologyError(ValueError):
    """A missing or inconsistent topology value; the message is one line and names the variable or flag.
    `exit_code` is what `incv4 launch` exits with."""

    exit_code = USAGE


class PeerTimeoutError(TopologyError):
    """The scheduler's host name did not resolve within the cluster timeout: retryable, as any peer that never came."""

    exit_code = PEER_TIMEOUT


@dataclass(frozen=True)
class Topology:
    nodes: int
    node_rank: int
    master_addr: str  # an IP address
    master_port: int
    local_workers: int

    @property
    def world_size(self) -> int:
        return self.nodes * self.local_workers

    @property
    def runs_scheduler(self) -> bool:
        return self.node_rank == 0

    def rank(self, local_rank: int) -> int:
        """Global rank of a local worker: ranks are contiguous per node, as msrun assigns them with --node_rank."""
        return self.node_rank * self.local_workers + local_rank

    def describe(self) -> str:
        return (f"node {self.node_rank}/{self.nodes}, {self.local_workers} local workers, world size "
                f"{self.world_size}, scheduler {self.master_addr}:{self.master_port}")


def _int_value(text: str, name: str, minimum: int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise TopologyError(f"{name}={text!r}: not an integer") from None
    if value < minimum:
        raise TopologyError(f"{name}={value}: must be >= {minimum}")
    return value


def _env_task_index(env: Mapping[str, str]) -> tuple[Optional[int], str]:
    """The env plugin's index; VC_TASK_INDEX and its older spelling VK_TASK_INDEX must agree when both are set."""
    vc, vk = env.get("VC_TASK_INDEX"), env.get("VK_TASK_INDEX")
    if vc is not None and vk is not None and vc.strip() != vk.strip():
        raise TopologyError(f"VC_TASK_INDEX={vc!r} and VK_TASK_INDEX={vk!r} disagree")
    if vc is not None:
        return _int_value(vc, "VC_TASK_INDEX", 0), "VC_TASK_INDEX"
    if vk is not None:
        return _int_value(vk, "VK_TASK_INDEX", 0), "VK_TASK_INDEX"
    return None, ""


def _hosts(env: Mapping[str, str], task: str, hosts_dir: str) -> tuple[list[str], str]:
    """The task's hosts from VC_<TASK>_HOSTS, else from the svc plugin's hosts file; ([], '') when neither exists."""
    var = f"VC_{task.replace('-', '_').upper()}_HOSTS"
    text = env.get(var)
    if text is not None:
        hosts = [h.strip() for h in text.split(",") if h.strip()]
        if not hosts:
            raise TopologyError(f"{var} is set but empty")
        return hosts, var
    path = os.path.join(hosts_dir, f"{task.replace('-', '_')}.host")
    try:
        with open(path, encoding="utf-8") as fh:
            hosts = [line.strip() for line in fh if line.strip()]
    except FileNotFoundError:
        return [], ""
    except OSError as err:
        raise TopologyError(f"hosts file {path}: cannot be read ({err.strerror})") from None
    if not hosts:
        raise TopologyError(f"hosts file {path} is empty")
    return hosts, path


def resolve_host(host: str, source: str, timeout: float = DEFAULT_RESOLVE_TIMEOUT,
                 resolver: Callable[[str], str] = socket.gethostbyname,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> str:
    """Host name -> IPv4 address. Retries until `timeout` (give the whole cluster timeout): a headless service's DNS
    record for a peer pod appears only once that pod exists, so the first lookups in a freshly scheduled job may
    fail. Raises PeerTimeoutError when the name still does not resolve at the deadline."""
    deadline = clock() + timeout
    while True:
        try:
            return resolver(host)
        except (OSError, UnicodeError) as err:
            if clock() >= deadline:
                reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
                raise PeerTimeoutError(f"scheduler host {host!r} (from {source}) does not resolve "
                                       f"after {timeout:g}s: {reason}") from None
            sleep(min(2.0, max(0.0, deadline - clock())))


def from_environment(env: Optional[Mapping[str, str]] = None, *, nodes: Optional[int] = None,
                     node_rank: Optional[int] = None, master_addr: Optional[str] = None,
                     master_port: Optional[int] = None, local_workers: Optional[int] = None,
                     task: str = TASK_NAME, hosts_dir: str = HOSTS_DIR,
                     resolve_timeout: float = DEFAULT_RESOLVE_TIMEOUT,
                     resolver: Callable[[str], str] = socket.gethostbyname) -> Topology:
    """Volcano's environment (or none: one node on loopback) plus explicit overrides -> a checked Topology."""
    env = os.environ if env is None else env
    num_var = f"VC_{task.replace('-', '_').upper()}_NUM"

    index, index_source = _env_task_index(env)
    if node_rank is not None:
        index, index_source = _int_value(str(node_rank), "--node-rank", 0), "--node-rank"

    hosts, hosts_source = _hosts(env, task, hosts_dir)
    if env.get(num_var) is not None:
        env_nodes = _int_value(env[num_var], num_var, 1)
        if hosts and len(hosts) != env_nodes:
            raise TopologyError(f"{num_var}={env_nodes} but {hosts_source} lists {len(hosts)} hosts")
        count, count_source = env_nodes, num_var
    elif hosts:
        count, count_source = len(hosts), hosts_source
    else:
        count, count_source = None, ""
    if nodes is not None:
        count, count_source = _int_value(str(nodes), "--nodes", 1), "--nodes"

    if count is None:
        if index not in (None, 0):
            raise TopologyError(f"{index_source}={index} but the node count is unknown: "
                                f"{num_var} is not set (give --nodes)")
        count, count_source = 1, "default"
    if index is None:
        if count > 1:
            raise TopologyError(f"{count_source} says {count} nodes but this node's index is unknown: "
                                f"VC_TASK_INDEX is not set (give --node-rank)")
        index, index_source = 0, "default"
    if index >= count:
        raise TopologyError(f"{index_source}={index} is out of range for {count} nodes ({count_source})")

    workers = DEFAULT_LOCAL_WORKERS if local_workers is None else _int_value(str(local_workers),
                                                                              "--local-workers", 1)
    port = MASTER_PORT if master_port is None else _int_value(str(master_port), "--master-port", 1)
    if port > 65535:
        raise TopologyError(f"--master-port={port}: must be <= 65535")

    if master_addr is not None:
        if not master_addr.strip():
            raise TopologyError("--master-addr is empty")
        host, host_source = master_addr.strip(), "--master-addr"
    elif hosts:
        host, host_source = hosts[0], hosts_source
    elif count == 1:
        host, host_source = LOOPBACK, "default"
    else:
        raise TopologyError(f"{count} nodes but no scheduler host: VC_{task.upper()}_HOSTS is not set and "
                            f"{os.path.join(hosts_dir, task + '.host')} is missing (give --master-addr)")
    address = resolve_host(host, host_source, resolve_timeout, resolver)
    return Topology(nodes=count, node_rank=index, master_addr=address, master_port=port, local_workers=workers)
