"""The torch process group backend: a real two-worker Ray Train run on CPU (gloo), made by the
factory trials and reference jobs use."""

from __future__ import annotations

from pathlib import Path

import pytest

from clear_ray.runtime.backend import TorchProcessGroupConfig


@pytest.mark.slow
def test_two_workers_share_one_gloo_group_without_trains_helper_actors(tmp_path: Path) -> None:
    """Neither Ray Data's actor nor Train's placement group cleaner starts (runtime/trainer.py);
    GCS names the workers' group's creator as the class the sweeps look for
    (runtime/cleanup.py), and the controller removes the group itself."""
    import ray

    from clear_ray.config import SearchConfig
    from clear_ray.runtime.ray_compat import placement_groups
    from clear_ray.runtime.train_run import data_parallel_trainer

    def check_group(config: dict) -> None:  # defined here: pickled by value
        """Every rank sees the group, torchrun's env vars and its peers' contributions."""
        import os

        import ray.train
        import torch
        import torch.distributed as dist

        context = ray.train.get_context()
        rank = context.get_world_rank()
        assert dist.is_initialized() and dist.get_backend() == "gloo"
        assert (dist.get_rank(), dist.get_world_size()) == (rank, 2)
        assert (os.environ["RANK"], os.environ["WORLD_SIZE"]) == (str(rank), "2")
        assert os.environ["LOCAL_RANK"] == str(context.get_local_rank())
        total = torch.tensor([rank + 1.0])
        dist.all_reduce(total)
        (Path(config["out"]) / f"rank{rank}.txt").write_text(str(total.item()))
        if rank == 0:
            from clear_ray.runtime.cleanup import creator_class
            from clear_ray.runtime.ray_compat import placement_groups

            own = ray.get_runtime_context().get_placement_group_id()
            group = next(g for g in placement_groups() if g.group_id == own)
            creator = f"{creator_class(group)}, dead: {group.creator_dead}"
            (Path(config["out"]) / "creator.txt").write_text(creator)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        search = SearchConfig(workers_per_trial=2, cpus_per_worker=0.5)
        trainer = data_parallel_trainer(
            check_group, {"out": str(tmp_path)}, search, "group", str(tmp_path)
        )
        result = trainer.fit()
        started = {actor["ActorClassName"] for actor in ray._private.state.actors().values()}
        left = [group for group in placement_groups() if group.live]
    finally:
        ray.shutdown()
    assert "TrainController" in started
    assert not started & {"DatasetManager", "PlacementGroupCleaner"}
    assert result.error is None
    assert (tmp_path / "creator.txt").read_text() == "TrainController, dead: False"
    assert left == []  # the controller removed the group itself
    # 1 + 2 on both ranks: each took part in the other's all-reduce
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["3.0", "3.0"]


def test_the_config_names_its_backend() -> None:
    config = TorchProcessGroupConfig(backend="nccl", timeout_s=60)
    assert config.to_dict() == {"backend": "nccl", "timeout_s": 60}
    assert config.backend_cls.share_cuda_visible_devices
