"""The names of what a trial reports each epoch, one spelling for the worker that reports
them (train/selection.py, train/loop.py, train/worker.py) and everything that reads them:
Tune's scheduler and stopper, the Optuna searcher, the trainable, MLflow, the trial table, the
console and the report (whose trials.csv columns carry the same names)."""

EPOCH = "epoch"  # the epoch just finished, from 1: Tune's time attribute

# The running best epoch (BestEpoch.summary), reported every epoch.
BEST_PREFIX = "best_"  # + a metric's name: its value at the best epoch (``best_key``)
BEST_EPOCH = "best_epoch"
BEST_OBJECTIVE = "best_objective"  # search.objective at the best epoch: what Optuna maximises
BEST_SCORE = "best_score"  # the objective when feasible, else below any objective: ASHA's
BEST_CONSTRAINT = "best_constraint"  # the largest constraint value (≤ 0: feasible)
CONSTRAINT_PREFIX = "best_constraint/"  # + a constraint's name: each one Optuna is handed
FEASIBLE = "feasible"  # 1.0 when every constraint of the best epoch (and trial) holds

# This epoch's own values (BestEpoch.epoch_values).
CONSTRAINT = "constraint"
EPOCH_FEASIBLE = "epoch_feasible"
EPOCH_SCORE = "epoch_score"  # ranks the epoch's checkpoint among those kept

# The trial-end relearning attack on the best epoch (robust/relearn.py check()'s recovery).
RELEARN_RECOVERY = "robust/relearn/net_recovery"

# A diverged trial's last report: this key fails the trial (search/trainable.py) with
# ``reason``.
DIVERGED_KEY = "diverged"
REASON = "reason"
NODE_KEY = "train_node"  # the Ray node id of rank 0: where the trial trained


def best_key(metric: str) -> str:
    """The reported name of ``metric``'s value at the best epoch."""
    return f"{BEST_PREFIX}{metric}"
