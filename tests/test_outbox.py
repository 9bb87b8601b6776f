"""The search's outbox of undelivered tracking calls: kept in order, torn lines dropped, pending
children named by placeholder until their runs exist."""

from __future__ import annotations

from pathlib import Path

from clear_ray.search.outbox import Outbox, pending_child, substitute


def test_operations_come_back_in_order_and_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "search" / "mlflow_outbox.jsonl")
    assert outbox.pending() == []
    outbox.append({"op": "metrics", "run_id": "r1", "metrics": {"a": 1.0}, "step": 1})
    outbox.append({"op": "status", "run_id": "r1", "status": "FINISHED", "tags": {}})
    with outbox.path.open("a") as handle:  # a driver killed mid-write
        handle.write('{"op": "metr')
    assert [op["op"] for op in outbox.pending()] == ["metrics", "status"]


def test_replace_keeps_what_is_left_and_removes_an_empty_outbox(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "mlflow_outbox.jsonl")
    ops = [{"op": "tags", "run_id": f"r{i}", "tags": {}} for i in range(3)]
    for op in ops:
        outbox.append(op)
    outbox.replace(ops[1:])
    assert outbox.pending() == ops[1:]
    outbox.replace([])
    assert not outbox.path.exists()


def test_a_pending_child_is_named_by_its_run_once_it_exists() -> None:
    placeholder = pending_child("t1")
    ops = [
        {"op": "metrics", "run_id": placeholder, "metrics": {}, "step": 1},
        {"op": "metrics", "run_id": pending_child("t2"), "metrics": {}, "step": 1},
        {"op": "start_child", "placeholder": pending_child("t3"), "trial": "t3"},
    ]
    assert [op.get("run_id") for op in substitute(ops, {placeholder: "abc"})] == [
        "abc",
        pending_child("t2"),
        None,
    ]
