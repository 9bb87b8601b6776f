"""``robust.checks`` on a method's best trial and its tuned confirm-seed runs."""

from __future__ import annotations

from pathlib import Path

from clear_ray.console import log
from clear_ray.pipeline.context import MethodSearch


def robustness(run: MethodSearch, adapter: Path) -> dict[str, float]:
    """``robust.checks`` on the best trial (``adapter``) and the tuned configuration's
    confirm-seed runs: robustness.json in the method's folder, the best trial's ``robust/*``
    on the method's run. Returns the seeds' mean when there are confirm runs (the
    leaderboard's tuned row), else the best's."""
    # lazy: torch, transformers and Ray, not loaded by --help
    from clear_ray.robust.run import (
        BEST,
        confirm_adapters,
        mean_metrics,
        merged_metrics,
        report_persons,
        run_checks,
        write_robustness,
    )

    search, method, cfg = run.search, run.method, run.cfg
    names = cfg.robust.names()
    if not names:
        return {}
    adapters = {BEST: adapter, **confirm_adapters(run.dir)}
    refs = search.refs
    persons = report_persons(search.dirs.root, refs.source, cfg.data.forget_split)
    log(f"{method}: robustness checks {', '.join(names)} on {len(adapters)} model(s), "
        f"{len(persons)} forget persons (Ray tasks, cached)")  # fmt: skip
    outcomes = run_checks(
        cfg, names, adapters, refs.original_model, refs.gold_model, refs.staged_source, persons
    )
    summary, details = write_robustness(run.dir, outcomes)
    for label, checks in outcomes.items():
        for name, outcome in checks.items():
            notes = "".join(f"; {note}" for note in outcome.result.notes)
            log(f"{method}: {label} {name} took {outcome.seconds:.0f} s{notes}")
    best = merged_metrics(outcomes[BEST])
    search.tracker.log_metrics(run.parent_id, best)
    search.tracker.log_artifacts(run.parent_id, [summary])
    search.tracker.log_artifacts(run.parent_id, [details], "robustness")
    seeds = [merged_metrics(checks) for label, checks in outcomes.items() if label != BEST]
    return mean_metrics(seeds) if seeds else best
