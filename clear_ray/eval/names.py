"""Names of the aggregate metrics every evaluation reports.

A module without imports, so the CLIs can name metrics before torch is loaded and the trial
bookkeeping (``train/selection.py``) and the evaluation summary list the same ones.
"""

from __future__ import annotations

# Same names, two definitions: clear/<name> is CLEAR's, the bare name the project's extended one.
EXTENDED_AGGREGATES = ("real_metric", "retain_metric", "forget_metric", "model_utility")
OBJECTIVE_METRICS = ("forget_quality", "log_forget_quality", "forget_quality_js")
# CLEAR's Table 1 columns (mm/build_vllm_table.py) and its forget quality, computed as CLEAR does.
CLEAR_METRICS = tuple(f"clear/{name}" for name in (*EXTENDED_AGGREGATES, *OBJECTIVE_METRICS))
SUMMARY_METRICS = (*CLEAR_METRICS, *EXTENDED_AGGREGATES, *OBJECTIVE_METRICS)
