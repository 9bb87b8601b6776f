"""The driver's study, in named phases (``python -m clear_ray.tune`` calls it).

Reads top to bottom: plan (config, saved state, spaces, input checks) → study (Ray, MLflow,
Original/Gold and their evaluations) → one Tune search per method (each an MLflow run;
several methods nest under one parent) → final full evaluation of each best trial, confirm
seeds, robustness → leaderboard and report. Objective: maximise ``search.objective`` (log
forget quality on the forget-quality task(s) of ``data.modality``) subject to
``search.retain_metric ≥ min_retain × Original's`` (CLEAR's Retain column by default;
optionally a utility threshold).

``evaluation.py`` is one model's evaluation outside a search (``python -m clear_ray.evaluate``).
"""
