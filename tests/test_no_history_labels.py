"""No development-history labels in tracked files or in their names.

A user reads the code, the docs and the results without the project's history: numbered work
periods, ticket and deliverable numbers, finding ids of an audit that is not in the repository,
and stories about the virtual machines the work ran on say nothing they can place. Measurements
name their date and machine (bench/RESULTS.md); history goes in CHANGELOG.md by date.

Allowed: a label inside a URL, and a ticket number whose line links that ticket
(``.../issues/N`` or ``.../pull/N``), as when citing an upstream bug.
"""

from __future__ import annotations

import re
import subprocess
from itertools import chain
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LABELS = re.compile(
    r"\bsessions? \d+"  # a numbered work period, or a range of them
    r"|\bsession[-_]?\d+"  # ... in a file name or an id
    r"|\bissues?[ -]?#?(?P<ticket>\d+)"  # a ticket number
    r"|\bdeliverables?[ -]?\d+"
    r"|\baudit [A-Z]\d+\b",  # a finding id of an audit the repository does not hold
    re.IGNORECASE,
)
MACHINE_STORY = re.compile(r"\bVMs?\b")  # "the old ...", "this ...'s speed": name the CPU instead
URL = re.compile(r"https?://\S+")


def labels(line: str) -> list[str]:
    """The history labels in one line of text, less those a URL carries or a link explains."""
    urls = [match.span() for match in URL.finditer(line)]
    found = []
    for match in chain(LABELS.finditer(line), MACHINE_STORY.finditer(line)):
        if any(start <= match.start() < end for start, end in urls):
            continue
        ticket = match.groupdict().get("ticket")
        if ticket and re.search(rf"/(?:issues|pull)/{ticket}\b", line):
            continue
        found.append(match.group())
    return found


def tracked_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [name for name in listing.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte, as git itself decides)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"measured in {'session'} 14 on another machine", [f"{'session'} 14"]),
        (f"as {'Session'}s 8-13 found", [f"{'Session'}s 8"]),
        (f"bench/STUDY-{'session'}14.md", [f"{'session'}14"]),
        (f"the ab12-{'session'}3code runs", [f"{'session'}3"]),
        (f"good idk trials ({'issue'} 15)", [f"{'issue'} 15"]),
        (f"the {'issue'}-15 run replaces it", [f"{'issue'}-15"]),
        (f"{'deliverable'} 3 holds", [f"{'deliverable'} 3"]),
        (f"first-token recall ({'audit'} M3)", [f"{'audit'} M3"]),
        (f"on the old {'V'}M the study", [f"{'V'}M"]),
        ("a warm Ray session, the session's base, session_output", []),
        ("see the GitHub issue tracker; VMware; vm.max_map_count", []),
        (f"Ray {'issue'} #4521 (https://github.com/ray-project/ray/issues/4521)", []),
        (f"https://example.org/{'session'}-3/notes.html", []),
        (
            f"Ray {'issue'} #4521 (https://github.com/ray-project/ray/issues/999)",
            [f"{'issue'} #4521"],
        ),
    ],
)
def test_labels_finds_history_labels_and_leaves_other_senses(line, expected) -> None:
    assert labels(line) == expected


def test_no_tracked_file_name_carries_a_history_label() -> None:
    named = [f"{name}: {found}" for name in tracked_files() if (found := labels(name))]
    assert not named, "rename these files (benchmark, date, variant):\n" + "\n".join(named)


def test_no_tracked_text_file_carries_a_history_label() -> None:
    hits = []
    for name in tracked_files():
        path = ROOT / name
        if not path.is_file():  # deleted in the working tree, or a submodule
            continue
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if found := labels(line):
                hits.append(f"{name}:{number}: {', '.join(found)}: {line.strip()[:100]}")
    assert not hits, (
        f"{len(hits)} development-history labels (say what and why, by date and machine):\n"
        + "\n".join(hits)
    )
