"""Read a search folder, build its report, write report.md and report.html, log them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from clear_ray.cache import write_atomic
from clear_ray.report.document import build_report
from clear_ray.report.inputs import SearchRecord
from clear_ray.report.render import to_html, to_markdown
from clear_ray.report.tables import ROBUSTNESS_CSV, ROBUSTNESS_CSV_HEADER, robustness_rows

REPORT_FILES = ("report.md", "report.html")


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([header, *rows])
    return buffer.getvalue()


def write_report(record: SearchRecord, out: Path | None = None) -> list[Path]:
    """The search's report into ``out`` (default: its folder): report.md, report.html and,
    when the search ran robustness checks, the robustness.csv they link; all rendered before
    any is written, each written whole (a failure leaves the previous report, not half)."""
    out = out or record.root
    report = build_report(record)
    files = dict(zip(REPORT_FILES, (to_markdown(report, out), to_html(report)), strict=True))
    robustness = robustness_rows(record)
    if robustness:
        files[ROBUSTNESS_CSV] = csv_text(ROBUSTNESS_CSV_HEADER, robustness)
    for name, text in files.items():
        write_atomic(out / name, text)
    return [out / name for name in files]


def log_report(tracking_uri: str, run_id: str, paths: list[Path]) -> None:
    """The report files as artifacts of ``run_id`` (a finished run takes artifacts too)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    for path in paths:
        client.log_artifact(run_id, str(path))
