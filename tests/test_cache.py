"""Cache entries that check themselves (manifest) and are built once (build lock)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from clear_ray import cache
from clear_ray.cache import (
    MANIFEST,
    CacheError,
    build_lock,
    cached_dir,
    manifest_problem,
    usable,
    write_manifest,
)
from clear_ray.errors import ConfigError


def entry(directory: Path) -> Path:
    (directory / "sub").mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(b"w" * 1000)
    (directory / "sub" / "config.json").write_text("{}")
    return directory


def test_the_manifest_lists_every_file_with_its_size_and_sha256(tmp_path: Path) -> None:
    import hashlib

    write_manifest(entry(tmp_path / "e"))
    files = json.loads((tmp_path / "e" / MANIFEST).read_text())["files"]
    assert files == {
        "model.safetensors": {"size": 1000, "sha256": hashlib.sha256(b"w" * 1000).hexdigest()},
        "sub/config.json": {"size": 2, "sha256": hashlib.sha256(b"{}").hexdigest()},
    }
    assert manifest_problem(tmp_path / "e") is None
    assert not [p for p in (tmp_path / "e").iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda d: (d / "model.safetensors").write_bytes(b"w" * 10), "is 10 bytes"),
        (lambda d: (d / "model.safetensors").write_bytes(b"x" * 1000), "sha256"),
        (lambda d: (d / "sub" / "config.json").unlink(), "sub/config.json is missing"),
        (lambda d: (d / MANIFEST).unlink(), f"no {MANIFEST}"),
        (lambda d: (d / MANIFEST).write_text("{"), "unreadable"),
    ],
)
def test_a_damaged_entry_is_discarded_with_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture, damage, problem: str
) -> None:
    directory = entry(tmp_path / "e")
    write_manifest(directory)
    damage(directory)
    assert not usable(directory, "cached original")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and problem in err[0]
    assert err[0].startswith(f"[clear_ray] warning: cached original at {directory} failed")
    assert list(tmp_path.iterdir()) == []  # gone, nothing left aside


def test_a_large_file_is_checked_by_size_and_its_ends(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache, "WHOLE_FILE_BYTES", 100)
    monkeypatch.setattr(cache, "ENDS_BYTES", 10)
    directory = tmp_path / "e"
    directory.mkdir()
    shard = directory / "model-00001-of-00002.safetensors"
    shard.write_bytes(bytes(range(200)))
    write_manifest(directory)
    assert set(json.loads((directory / MANIFEST).read_text())["files"][shard.name]) == {
        "size",
        "sha256_ends",
    }
    data = bytearray(shard.read_bytes())
    data[195] ^= 1  # in the last ENDS_BYTES
    shard.write_bytes(bytes(data))
    assert "sha256" in manifest_problem(directory)


def test_cached_dir_builds_again_what_fails_its_check(tmp_path: Path) -> None:
    target, builds = tmp_path / "entry", []

    def build(out: Path) -> None:
        builds.append(out)
        (out / "reference.json").write_text('{"a": 1}')

    cached_dir(target, build)
    assert manifest_problem(target) is None
    cached_dir(target, build)
    assert len(builds) == 1  # intact: reused
    (target / "reference.json").write_text("")  # truncated
    cached_dir(target, build)
    assert len(builds) == 2 and (target / "reference.json").read_text() == '{"a": 1}'


def test_a_copy_that_fails_the_manifest_it_came_with_is_refused(tmp_path: Path) -> None:
    source = entry(tmp_path / "published")
    write_manifest(source)
    (source / "model.safetensors").write_bytes(b"cut")

    def copy(out: Path) -> None:
        for path in source.rglob("*"):
            if path.is_file():
                (out / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                (out / path.relative_to(source)).write_bytes(path.read_bytes())

    with pytest.raises(CacheError, match=r"model\.safetensors is 3 bytes"):
        cached_dir(tmp_path / "local", copy, "published models/m")
    assert not (tmp_path / "local").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["published"]  # no staging folder left


def test_a_second_builder_waits_for_the_first_and_says_what_for(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    target, order = tmp_path / "models" / "tiny-llava-original-abc", []
    holding = threading.Event()

    def first() -> None:
        with build_lock(target, "original", 30):
            holding.set()
            time.sleep(1.0)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait()
    with build_lock(target, "original", 30):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"[clear_ray] original: another process is building {target}; waiting up to 30s for it"
    ]


def test_a_wait_past_its_limit_fails_in_one_line_naming_the_entry(tmp_path: Path) -> None:
    target = tmp_path / "e"
    release = threading.Event()
    held = threading.Event()

    def holder() -> None:
        with build_lock(target, "gold", 30):
            held.set()
            release.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    try:
        with (
            pytest.raises(ConfigError, match=r"search\.reference_wait_s") as error,
            build_lock(target, "gold", 0.2),
        ):
            pass
    finally:
        release.set()
        thread.join()
    assert str(error.value).startswith(f"gold: {target} was still being built")
    assert "\n" not in str(error.value)
