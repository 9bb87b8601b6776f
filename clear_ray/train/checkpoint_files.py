"""The files of a trial's epoch checkpoint (written by train/loop.py in the Train workers).

Named apart from the training loop, so the search driver reads a checkpoint's history
(search/trial_history.py) without importing the training stack.
"""

ADAPTER_WEIGHTS = "adapter_model.safetensors"
PROGRESS_FILE = "trial_progress.json"  # where the trial stands: epoch, step, best-epoch state
METRICS_FILE = "epoch_metrics.json"  # what the epoch reported
HISTORY_FILE = "epoch_history.json"  # what every epoch so far reported, in order
DIVERGED_FILE = "diverged.txt"
BEST_ADAPTER_DIR = "best_adapter"  # the best epoch's adapter, for the trial-end relearn attack
