"""trainer/metrics/exporter.py: a pod's /metrics is dual-stack (IPv6-only clusters scrape it too), a local run's
stays on IPv4 loopback."""
from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from incv4.trainer.metrics import exporter as metrics
from prometheus_server import free_port


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_pod_endpoint_answers_on_ipv6_and_ipv4_loopback():
    launcher = metrics.LauncherMetrics(ranks=[0])
    server = metrics.serve(free_port(), addr=metrics.POD_ADDR)
    try:
        for url in (f"http://[::1]:{server.port}/metrics", f"http://127.0.0.1:{server.port}/metrics"):
            assert 'incv4_worker_restarts_total{rank="0"} 0.0' in scrape(url), url
    finally:
        server.shutdown()
        metrics._LAUNCHERS.remove(launcher)


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_local_endpoint_stays_on_ipv4_loopback():
    launcher = metrics.LauncherMetrics(ranks=[0])
    server = metrics.serve(free_port(), addr=metrics.LOCAL_ADDR)
    try:
        assert 'incv4_worker_restarts_total{rank="0"} 0.0' in scrape(f"http://127.0.0.1:{server.port}/metrics")
        with pytest.raises(urllib.error.URLError):
            scrape(f"http://[::1]:{server.port}/metrics")
    finally:
        server.shutdown()
        metrics._LAUNCHERS.remove(launcher)
