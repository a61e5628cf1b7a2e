"""The live trainer worker processes of one test's run, found through /proc (the e2e tests that kill a worker)."""
from __future__ import annotations

import os

from incv4.trainer.launcher.plan import WORKER_MODULE


def worker_pids(marker: str) -> dict:
    """{rank: pid} of live trainer processes whose command line mentions `marker` (the test's ckpt dir)."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().decode(errors="replace")
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = dict(item.split("=", 1) for item in fh.read().decode(errors="replace").split("\0")
                           if "=" in item)
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if WORKER_MODULE in cmdline and marker in cmdline and state != b"Z" and "RANK_ID" in env:
            found[int(env["RANK_ID"])] = int(entry)
    return found
