"""Driver directories reach trials on any node: opened in place where visible, else copied."""

from __future__ import annotations

from pathlib import Path

import pytest

from clear_ray.runtime.staging import DriverDir, fetch, on_this_node, stage


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "original"
    (directory / "sub").mkdir(parents=True)
    (directory / "config.json").write_text('{"a": 1}')
    (directory / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 40)  # 10240 bytes
    (directory / "empty.txt").write_bytes(b"")
    return directory


def test_a_visible_directory_is_opened_in_place(local_ray, model_dir: Path) -> None:
    staged = stage(str(model_dir))
    assert isinstance(staged, DriverDir)
    assert staged.files == (("config.json", 8), ("empty.txt", 0), ("sub/weights.bin", 10240))
    assert on_this_node(staged) == str(model_dir)


def test_hub_ids_and_plain_paths_pass_through(tmp_path: Path) -> None:
    assert stage("therem/CLEAR") == "therem/CLEAR"
    assert on_this_node("therem/CLEAR") == "therem/CLEAR"


def test_a_changed_directory_is_not_taken_for_the_staged_one(local_ray, model_dir: Path) -> None:
    staged = DriverDir.of(model_dir)
    (model_dir / "config.json").write_text('{"a": 12}')
    assert not staged.visible_here()


def test_fetch_copies_through_ray_tasks_in_chunks_once(
    local_ray, model_dir: Path, tmp_path: Path
) -> None:
    staged = DriverDir.of(model_dir)
    cache = tmp_path / "node_cache"
    copy = fetch(staged, cache, chunk_bytes=1000)  # weights.bin takes 11 chunks
    assert copy == cache / staged.digest
    for relative, _ in staged.files:
        assert (copy / relative).read_bytes() == (model_dir / relative).read_bytes()
    assert not list(cache.glob("*.partial"))

    (copy / "config.json").write_text("marker")  # a second fetch must reuse the copy
    assert fetch(staged, cache) == copy
    assert (copy / "config.json").read_text() == "marker"
