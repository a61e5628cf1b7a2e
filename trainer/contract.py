"""What the cluster side (operator/, the chart, the dashboard and alerts) and the in-pod side (trainer/) share:
exit codes, ports, the Volcano task name, the launcher's grace period. Importable without MindSpore or the
kubernetes client; every other module takes these values from here, so each is spelled once."""

# -- exit codes of `incv4 launch`, `incv4 train` and each worker (docs/exit-codes.md) -----------------------------
# Volcano's policies (operator/render.py) abort the job on a permanent code and restart it on any other failure.
OK = 0
# Retryable: something went wrong that a restart may cure (a worker crashed, a node was lost).
FAILURE = 1
# Permanent: bad flags, a bad recipe, missing data. Restarting changes nothing.
USAGE = 2
# Retryable: the cluster did not form (peers never arrived, the scheduler was unreachable) within the timeout.
PEER_TIMEOUT = 3
# Permanent: training diverged (too many non-finite losses in a row).
DIVERGED = 4
# Retryable: stopped by SIGTERM (preemption, `incv4 suspend`, pod deletion) after saving a checkpoint.
TERMINATED = 143

PERMANENT = (USAGE, DIVERGED)

# -- ports --------------------------------------------------------------------------------------------------------
# /metrics of a pod (and of a local run); 0 on the command line turns it off. The pod port is named METRICS_PORT_NAME
# so the PodMonitor and `incv4 status` find it by name.
METRICS_PORT = 9400
METRICS_PORT_NAME = "metrics"
# MindSpore's scheduler on node 0 (msrun's --master_port default).
MASTER_PORT = 8118

# -- the Volcano Job ----------------------------------------------------------------------------------------------
# The one task of the Job; Volcano names pods `<job>-<task>-<index>` and its env plugin sets VC_<TASK>_* variables.
TASK_NAME = "worker"
# Seconds `incv4 launch` gives its workers between forwarding SIGTERM and SIGKILL, so they can save a checkpoint.
# The pod's terminationGracePeriodSeconds must outlast it (operator/spec.py).
LAUNCH_GRACE_PERIOD = 30
