"""charts/incv4/files/contract.json: the values of incv4.trainer.contract the Helm chart needs, so its templates read
them (`.Files.Get "files/contract.json" | fromJson`, templates/_helpers.tpl) instead of spelling them again.
Regenerate after a change to the contract:

    python -m incv4.operator.monitoring.contract_file > charts/incv4/files/contract.json
"""
from __future__ import annotations

import json
import sys

from incv4.trainer import contract

GENERATED_BY = "python -m incv4.operator.monitoring.contract_file"


def build() -> dict:
    """The chart's view of the contract (camelCase keys, as Helm values are spelt)."""
    return {
        "_generatedBy": f"`{GENERATED_BY}` from incv4.trainer.contract; do not edit by hand",
        "metricsPort": contract.METRICS_PORT,
        "metricsPortName": contract.METRICS_PORT_NAME,
        "taskName": contract.TASK_NAME,
        "permanentExitCodes": list(contract.PERMANENT),
        "defaultLocalWorkers": contract.DEFAULT_LOCAL_WORKERS,
        "launchGracePeriod": contract.LAUNCH_GRACE_PERIOD,
        "jobNameLabel": contract.JOB_NAME,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv=None) -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
