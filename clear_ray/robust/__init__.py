"""Does the forgetting hold? Relearning, quantization, prompt and cross-modal checks.

One module per check, each a function of a :class:`~clear_ray.robust.context.CheckContext`
returning named metrics ``robust/<check>/<name>`` and per-item values; the registry, the Ray
task and its cache are in ``run.py``.
"""
