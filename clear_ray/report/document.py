"""The report as sections of sentences, tables and images, before any markup."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clear_ray.report.inputs import SearchRecord
from clear_ray.report.tables import (
    ROBUSTNESS_CSV,
    Table,
    configurations_table,
    folds_line,
    l1_table,
    missing_notes,
    paired_table,
    robustness_table,
    table1,
    threshold_line,
)
from clear_ray.search.results import WORST_NORMALISED

PLOTS = (  # plots.FILE_NAMES key, caption
    ("retain", "forget quality vs retain of every trial, Original and Gold marked, threshold"),
    ("history", "optimisation history (running best feasible)"),
    ("pareto", "Pareto front of the feasible trials"),
    ("importances", "parameter importances"),
)


@dataclass
class Section:
    heading: str
    lines: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[tuple[str, Path]] = field(default_factory=list)  # (caption, PNG)
    # (text, file name): files written beside the report (write.py), linked by relative path
    links: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Report:
    title: str
    sections: list[Section]


def overview(record: SearchRecord) -> list[str]:
    cfg = record.config
    pareto = f", Pareto against {cfg.search.utility_metric}" if cfg.search.multi_objective else ""
    return [
        f"Model {cfg.model.preset}, data {cfg.data.source or 'synthetic'}, "
        f"{cfg.data.forget_split}, modality {cfg.data.modality}.",
        f"Objective: maximise {cfg.search.objective} ({cfg.search.sampler} sampler, "
        f"{cfg.search.num_samples} trials × {cfg.train.epochs} epochs per method{pareto}).",
        f"Methods: {', '.join(m.name for m in record.methods)}. Search folder: {record.root}. "
        f"MLflow run: {record.run_id or 'none'}.",
    ]


def build_report(record: SearchRecord) -> Report:
    sections = [Section("Search", overview(record))]
    notes = missing_notes(record)
    if notes:
        sections.append(Section("Missing", notes))
    sections.append(
        Section(
            "Table 1",
            [threshold_line(record), folds_line(record.folds)],
            [table1(record), configurations_table(record)],
        )
    )
    paired = paired_table(record)
    if paired is not None:
        sections.append(Section("Did tuning beat the default?", tables=[paired]))
    sections.append(
        Section(
            "Does the L1 regulariser help?", ["CLEAR's question, per method."], [l1_table(record)]
        )
    )
    if any(method.robustness for method in record.methods):
        table = robustness_table(record)
        none = f"No checked model has a normalised worst case (robust/<check>/{WORST_NORMALISED})."
        detail = ("every check's value per variant and model (CSV)", ROBUSTNESS_CSV)
        sections.append(
            Section("Robustness", [] if table else [none], [table] if table else [], links=[detail])
        )
    for method in record.methods:
        images = [(caption, method.plots[key]) for key, caption in PLOTS if key in method.plots]
        lines = [] if images else ["no plots in the search folder"]
        sections.append(Section(f"Plots: {method.name}", lines, images=images))
    return Report(f"Search {record.state.name}", sections)
