"""Exit codes of `incv4 launch`, `incv4 train` and each worker, so Volcano policies can tell a failure worth a
restart from one that will fail the same way again. Documented in the README ("Exit codes")."""

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
