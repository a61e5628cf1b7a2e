"""Volcano's env/svc plugin variables -> Topology, with one-line errors naming the variable."""
from __future__ import annotations

import socket

import pytest

from incv4.trainer import contract
from incv4.trainer.launcher.topology import (PeerTimeoutError, Topology, TopologyError, from_environment,
                                              resolve_host)

HOSTS = "job-worker-0.job,job-worker-1.job,job-worker-2.job"


def fake_dns(table):
    def resolver(host):
        if host in table:
            return table[host]
        raise socket.gaierror(-2, "Name or service not known")
    return resolver


DNS = fake_dns({"job-worker-0.job": "10.0.0.10", "job-worker-1.job": "10.0.0.11", "job-worker-2.job": "10.0.0.12",
                "127.0.0.1": "127.0.0.1"})


def topo(env, tmp_path, **flags):
    return from_environment(env, hosts_dir=str(tmp_path), resolver=DNS, resolve_timeout=0, **flags)


def test_volcano_env_gives_rank_count_and_first_host(tmp_path):
    t = topo({"VC_TASK_INDEX": "2", "VK_TASK_INDEX": "2", "VC_WORKER_NUM": "3", "VC_WORKER_HOSTS": HOSTS}, tmp_path)
    assert t == Topology(nodes=3, node_rank=2, master_addr="10.0.0.10", master_port=8118, local_workers=8)
    assert t.world_size == 24 and t.rank(0) == 16 and t.rank(7) == 23 and not t.runs_scheduler


def test_vk_task_index_alone_is_accepted(tmp_path):
    t = topo({"VK_TASK_INDEX": "0", "VC_WORKER_NUM": "3", "VC_WORKER_HOSTS": HOSTS}, tmp_path)
    assert t.node_rank == 0 and t.runs_scheduler


def test_hosts_file_is_the_fallback_for_hosts_and_count(tmp_path):
    (tmp_path / "worker.host").write_text("job-worker-1.job\njob-worker-0.job\n\n")
    t = topo({"VC_TASK_INDEX": "1"}, tmp_path)
    assert (t.nodes, t.node_rank, t.master_addr) == (2, 1, "10.0.0.11")


def test_flags_override_the_environment(tmp_path):
    t = topo({"VC_TASK_INDEX": "2", "VC_WORKER_NUM": "3", "VC_WORKER_HOSTS": HOSTS}, tmp_path,
             nodes=2, node_rank=1, master_addr="127.0.0.1", master_port=9000, local_workers=4)
    assert t == Topology(nodes=2, node_rank=1, master_addr="127.0.0.1", master_port=9000, local_workers=4)


def test_no_volcano_env_means_one_node_on_loopback(tmp_path):
    assert topo({}, tmp_path) == Topology(1, 0, "127.0.0.1", 8118, 8)


@pytest.mark.parametrize("env, flags, names", [
    ({"VC_TASK_INDEX": "1"}, {}, "VC_WORKER_NUM"),
    ({"VC_TASK_INDEX": "x", "VC_WORKER_NUM": "2"}, {}, "VC_TASK_INDEX"),
    ({"VC_TASK_INDEX": "1", "VK_TASK_INDEX": "0", "VC_WORKER_NUM": "2"}, {}, "VK_TASK_INDEX"),
    ({"VC_TASK_INDEX": "3", "VC_WORKER_NUM": "3", "VC_WORKER_HOSTS": HOSTS}, {}, "VC_TASK_INDEX=3"),
    ({"VC_TASK_INDEX": "0", "VC_WORKER_NUM": "2", "VC_WORKER_HOSTS": HOSTS}, {}, "VC_WORKER_NUM=2"),
    ({"VC_TASK_INDEX": "0", "VC_WORKER_NUM": "0"}, {}, "VC_WORKER_NUM"),
    ({"VC_WORKER_NUM": "2", "VC_WORKER_HOSTS": HOSTS.rsplit(",", 1)[0]}, {}, "VC_TASK_INDEX"),
    ({"VC_TASK_INDEX": "1", "VC_WORKER_NUM": "2"}, {}, "--master-addr"),
    ({"VC_TASK_INDEX": "0", "VC_WORKER_NUM": "2", "VC_WORKER_HOSTS": " , "}, {}, "VC_WORKER_HOSTS"),
    ({}, {"node_rank": 1}, "--node-rank=1"),
    ({}, {"master_port": 70000}, "--master-port"),
    ({}, {"local_workers": 0}, "--local-workers"),
])
def test_missing_or_inconsistent_values_name_the_variable(tmp_path, env, flags, names):
    with pytest.raises(TopologyError) as err:
        topo(env, tmp_path, **flags)
    message = str(err.value)
    assert names in message and "\n" not in message


def test_unresolvable_scheduler_host_names_its_source(tmp_path):
    with pytest.raises(PeerTimeoutError, match=r"'nowhere\.job' \(from VC_WORKER_HOSTS\) does not resolve"):
        topo({"VC_TASK_INDEX": "0", "VC_WORKER_NUM": "1", "VC_WORKER_HOSTS": "nowhere.job"}, tmp_path)


def test_resolution_retries_until_the_peer_dns_record_appears():
    calls = []

    def late_dns(host):
        calls.append(host)
        if len(calls) < 3:
            raise socket.gaierror(-2, "Name or service not known")
        return "10.0.0.10"

    assert resolve_host("job-worker-0.job", "VC_WORKER_HOSTS", timeout=30, resolver=late_dns,
                        ) == "10.0.0.10"
    assert len(calls) == 3


def test_real_resolver_turns_localhost_into_an_ip(tmp_path):
    t = from_environment({}, master_addr="localhost", hosts_dir=str(tmp_path), resolve_timeout=0)
    assert t.master_addr.startswith("127.")


class FakeClock:
    """Monotonic time that advances only when the code under test sleeps."""

    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_a_peer_name_that_never_resolves_is_a_retryable_peer_timeout_after_the_whole_cluster_timeout():
    clock, lookups = FakeClock(), []

    def no_dns(host):
        lookups.append(clock.now)
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(PeerTimeoutError) as err:
        resolve_host("job-worker-0.job", "VC_WORKER_HOSTS", timeout=600, resolver=no_dns, clock=clock,
                     sleep=clock.sleep)
    # Exit 3 (PEER_TIMEOUT, retryable: Volcano restarts the job), not 2 (USAGE, which aborts it for good).
    assert err.value.exit_code == contract.PEER_TIMEOUT and contract.PEER_TIMEOUT not in contract.PERMANENT
    assert "after 600s" in str(err.value) and "\n" not in str(err.value)
    # It kept asking until the deadline, not just for a minute, and never slept past it.
    assert lookups[-1] == 1600.0 and max(lookups[:-1]) < 1600.0 and len(lookups) > 30
    assert max(clock.slept) <= 2.0


def test_a_peer_that_appears_after_a_minute_still_joins_within_the_cluster_timeout():
    clock = FakeClock()
    start = clock.now

    def slow_pod0(host):
        if clock.now - start < 300:  # pod 0 waited five minutes for its volume
            raise socket.gaierror(-2, "Name or service not known")
        return "10.0.0.10"

    assert resolve_host("job-worker-0.job", "VC_WORKER_HOSTS", timeout=600, resolver=slow_pod0, clock=clock,
                        sleep=clock.sleep) == "10.0.0.10"


def test_the_default_wait_is_the_default_cluster_timeout():
    from incv4.trainer import options
    from incv4.trainer.launcher import topology

    assert topology.DEFAULT_RESOLVE_TIMEOUT == options.CLUSTER_TIMEOUT


def test_inconsistent_environment_stays_a_permanent_usage_error(tmp_path):
    with pytest.raises(TopologyError) as err:
        topo({"VC_TASK_INDEX": "x", "VC_WORKER_NUM": "2"}, tmp_path)
    assert err.value.exit_code == contract.USAGE and not isinstance(err.value, PeerTimeoutError)
