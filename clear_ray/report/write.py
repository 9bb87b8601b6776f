"""Read a search folder, build its report, write report.md and report.html, log them."""

from __future__ import annotations

from pathlib import Path

from clear_ray.report.document import build_report
from clear_ray.report.inputs import SearchRecord
from clear_ray.report.render import to_html, to_markdown, write_whole

REPORT_FILES = ("report.md", "report.html")


def write_report(record: SearchRecord, out: Path | None = None) -> list[Path]:
    """Both files of the search's report into ``out`` (default: its folder); rendered before
    either is written, each written whole (a failure leaves the previous report, not half)."""
    out = out or record.root
    report = build_report(record)
    texts = (to_markdown(report, out), to_html(report))
    return [write_whole(out / name, text) for name, text in zip(REPORT_FILES, texts, strict=True)]


def log_report(tracking_uri: str, run_id: str, paths: list[Path]) -> None:
    """The report files as artifacts of ``run_id`` (a finished run takes artifacts too)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    for path in paths:
        client.log_artifact(run_id, str(path))
