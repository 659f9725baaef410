"""Data-parallel training is the same training: 2 ranks x B rays per step give the parameters of 1 process x 2B
rays on the same rays (gloo, 2 processes started here); torchrun end to end writes one run dir, evaluates the test
views shared out over the ranks, and resumes across a change of world size."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from omegaconf import DictConfig, OmegaConf

from conftest import REPO, compose_train, tiny_overrides
from nerfexp.runtime.distributed import World, launch_environment, merge_shards
from nerfexp.train import Trainer, batch_sizes

B = 96  # rays per rank; the single process takes 2B
# A few steps: the two runs sum the same numbers in a different order (1e-7 apart), and after a few steps a ReLU
# or an occupancy threshold flips on such a difference and the runs part for good (measured: parameters agree
# to < 1e-6 of their scale for 3 NeRF steps and < 7e-6 for 6 hash-grid steps, then differ by ~1e-4)
STEPS = {"frequency_nerf": 3, "hashgrid_grid_occupancy": 5}
# Adam divides each gradient by its running magnitude, so where a gradient is near zero those 1e-7 differences move
# a parameter by a visible fraction of the learning rate (measured: 9.8e-6 after 3 NeRF steps at lr 2e-3, whose
# oneDNN products round differently for 96 and 192 rays). Parameters may differ by 1% of the distance the steps can
# move them; a rank that steps on its own gradients differs by about the learning rate, 100x more.
STEP_NOISE = 0.01
# deterministic sampling (no jitter, no density noise) and a fixed background: the rays and their samples are
# then the same in both runs, so any difference is in how gradients are combined
NERF = ["sampler.perturb=false", "dataset.background=white", "trainer.val_every=0", "trainer.ckpt_every=0",
        "trainer.ckpt_every_s=null"]
NGP = ["model=ngp", "encoder.position.n_levels=4", "encoder.position.log2_table_size=12",
       "encoder.position.finest_resolution=64", "sampler.resolution=16", "sampler.diagonal_steps=64",
       "sampler.update_every=4", "sampler.warmup_steps=6", "sampler.max_batch_samples=null", "sampler.perturb=false",
       "dataset.background=white", "trainer.val_every=0", "trainer.ckpt_every=0", "trainer.ckpt_every_s=null"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pipeline_cfg(cache: Path, extra: list[str], batch: int) -> DictConfig:
    scene = tiny_overrides(cache)
    if "model=ngp" in extra:
        scene = [o for o in scene if not o.startswith(("model=", "field.", "sampler."))]
    return compose_train(scene + extra + [f"trainer.batch_rays={batch}"])


def train_steps(trainer: Trainer, steps: int) -> dict:
    """``steps`` optimisation steps; the parameters after them and the (averaged) gradients of the first."""
    first_grads = None
    for _ in range(steps):
        trainer.train_step()
        if first_grads is None:
            first_grads = {n: p.grad.clone() for n, p in trainer.pipeline.named_parameters() if p.grad is not None}
    return {"params": {n: p.detach().clone() for n, p in trainer.pipeline.named_parameters()},
            "grads": first_grads}


def rank_worker(rank: int, cfg: dict, out: str, port: int, steps: int, average: bool) -> None:
    """One rank of a 2-process gloo run: ``steps`` steps, rank 0 saves what it holds."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import nerfexp.train
    from nerfexp.runtime.distributed import close_world, init_world

    if not average:  # the bug a distributed trainer must not have: each rank steps on its own gradients
        nerfexp.train.average_gradients = lambda params, world, flags=(): list(flags)
    world = init_world(torch.device("cpu"))
    trainer = Trainer(OmegaConf.create(cfg), Path(out) / f"rank{rank}", world=world)
    result = train_steps(trainer, steps)
    result["buffers"] = {n: b.clone() for n, b in trainer.pipeline.named_buffers()}
    torch.save(result, Path(out) / f"rank{rank}.pt")
    trainer.close()
    close_world(world)


def two_ranks(cfg: DictConfig, out: Path, steps: int, average: bool = True) -> dict:
    # made here, not by rank 0's trainer: a rank that does not wait for the other's gradients can finish first
    out.mkdir(parents=True, exist_ok=True)
    mp.start_processes(rank_worker, args=(OmegaConf.to_container(cfg), str(out), free_port(), steps, average),
                       nprocs=2, start_method="spawn")
    ranks = [torch.load(out / f"rank{r}.pt") for r in range(2)]
    return {**ranks[0], "other_rank": ranks[1]}


def one_process(cfg: DictConfig, out: Path, steps: int) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(cfg, out)
        result = train_steps(trainer, steps)
        trainer.close()
        return result
    finally:
        torch.set_num_threads(threads)


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 1e-5, atol: float = 0.0) -> None:
    """Every tensor of ``a`` within ``rtol`` of ``b``'s scale (its largest magnitude) plus ``atol``: an element-wise
    relative test would compare rounding noise wherever a gradient or a weight is near zero."""
    assert a.keys() == b.keys()
    for name in a:
        error = float((a[name] - b[name]).abs().max())
        assert error <= rtol * float(b[name].abs().max()) + atol + 1e-12, (name, error, float(b[name].abs().max()))


def step_tolerance(cfg: DictConfig, steps: int) -> float:
    """How far ``steps`` optimiser steps may leave two runs' parameters apart from rounding alone."""
    return STEP_NOISE * float(cfg.optim.lr) * steps


@pytest.mark.parametrize("extra", [NERF, NGP], ids=list(STEPS))
def test_two_ranks_train_as_one_process_with_twice_the_batch(extra, demo_cache, tmp_path, request):
    steps = STEPS[request.node.callspec.id]
    cfg = pipeline_cfg(demo_cache, extra, B)
    ranks = two_ranks(cfg, tmp_path / "ranks", steps)
    single = one_process(pipeline_cfg(demo_cache, extra, 2 * B), tmp_path / "single", steps)
    # the mean of the ranks' gradients is the gradient of the whole batch (a sum would be twice it)
    assert_same(ranks["grads"], single["grads"])
    assert_same(ranks["params"], single["params"], atol=step_tolerance(cfg, steps))
    # every rank holds the same model and the same occupancy grid (refreshed from per-rank random points)
    other = ranks["other_rank"]
    assert all(torch.equal(other["params"][n], p) for n, p in ranks["params"].items())
    assert all(torch.equal(other["buffers"][n], b) for n, b in ranks["buffers"].items())
    moved = sum(float((single["params"][n] - p.detach()).abs().max()) for n, p in
                Trainer(pipeline_cfg(demo_cache, extra, B), tmp_path / "init").pipeline.named_parameters())
    assert moved > 1e-3  # the steps did change the parameters


def test_equivalence_fails_when_gradients_are_not_averaged(demo_cache, tmp_path):
    steps = STEPS["frequency_nerf"]
    cfg = pipeline_cfg(demo_cache, NERF, B)
    ranks = two_ranks(cfg, tmp_path / "ranks", steps, average=False)
    single = one_process(pipeline_cfg(demo_cache, NERF, 2 * B), tmp_path / "single", steps)
    rounding = step_tolerance(cfg, steps)
    with pytest.raises(AssertionError):  # by far more than the rounding the equivalence test allows
        assert_same(ranks["params"], single["params"], atol=10 * rounding)


def test_ranks_draw_disjoint_rays_that_cover_an_epoch():
    from nerfexp.data.batcher import RayBatcher

    n_images, h, w, per_rank, size = 3, 4, 5, 6, 2
    rank_batch, global_batch = batch_sizes(per_rank, "rank", size)
    seen = []
    for rank in range(size):
        batcher = RayBatcher(n_images, h, w, global_batch, seed=3)
        for step in range(n_images * h * w // global_batch):
            px = batcher.next(step)
            part = slice(rank * rank_batch, (rank + 1) * rank_batch)
            seen += (px.image[part] * h * w + px.j[part] * w + px.i[part]).tolist()
    assert sorted(seen) == list(range(n_images * h * w))  # every ray once, none on two ranks


def test_batch_scope_and_launch_environment():
    assert batch_sizes(1024, "rank", 4) == (1024, 4096)
    assert batch_sizes(1024, "global", 4) == (256, 1024)
    with pytest.raises(Exception, match="multiple of 3"):
        batch_sizes(1024, "global", 3)
    assert launch_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == World(1, 2, 1)
    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
    assert launch_environment(slurm) == World(5, 8, 1)
    # an interactive salloc shell sets SLURM_NTASKS too: a plain python train.py there is one process
    assert launch_environment({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) == World()
    assert World(1, 3).shard(8) == [1, 4, 7]
    assert merge_shards([[(0, "a"), (2, "c")], [(1, "b")]]) == ["a", "b", "c"]


def torchrun(args: list[str], cwd: Path, nproc: int, script: str = "train.py") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(REPO / script), *args] if nproc > 1 else [sys.executable, str(REPO / script), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-12000:]
    return result


def test_torchrun_writes_one_run_and_resumes_across_world_sizes(demo_cache, tmp_path):
    args = [o for o in tiny_overrides(demo_cache)] + ["trainer.threads=1", "trainer.val_every=20",
                                                       "trainer.ckpt_every=20", "trainer.max_steps=20"]
    torchrun(args, tmp_path, nproc=2)
    runs = [p.parent for p in tmp_path.glob("outputs/*/*/config.yaml")]
    assert len(runs) == 1, runs  # rank 1 made no run dir of its own
    assert not list(tmp_path.glob("*.log")) and not (tmp_path / ".hydra").exists()
    run = runs[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_rays"] == 2 * 512
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["render"]["ranks"] == 2 and len(metrics["per_view"]) == 2  # both test views, gathered
    assert len(list((run / "eval" / "pred").glob("*.png"))) == 2

    # written by 2 ranks, continued by 1, then by 2 again
    torchrun(args[:-1] + ["trainer.max_steps=30", f"resume={run}"], tmp_path, nproc=1)
    assert json.loads((run / "summary.json").read_text())["steps"] == 30
    torchrun(args[:-1] + ["trainer.max_steps=40", f"resume={run}"], tmp_path, nproc=2)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["world_size"] == 2
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # one history, no step logged twice by two ranks
    assert len([p for p in tmp_path.glob("outputs/*/*") if (p / "config.yaml").exists()]) == 1

    # evaluate.py on 2 ranks: the views and the video frames shared out, gathered and written once by rank 0
    torchrun([f"run={run}", "out_subdir=eval2", "video=true", "video_frames=5", "device=cpu"], tmp_path, nproc=2,
             script="evaluate.py")
    metrics2 = json.loads((run / "eval2" / "metrics.json").read_text())
    assert metrics2["render"]["ranks"] == 2 and [v["frame"] for v in metrics2["per_view"]] == [
        v["frame"] for v in metrics["per_view"]]
    torchrun([f"run={run}", "out_subdir=eval1", "video=true", "video_frames=5", "device=cpu"], tmp_path, nproc=1,
             script="evaluate.py")
    import imageio.v3 as iio

    two, one = (iio.imread(run / sub / "video" / "render_path.gif").astype(float) for sub in ("eval2", "eval1"))
    assert two.shape == one.shape and len(two) == 5
    assert np.abs(two - one).mean() < 0.5  # the same frames in the same order as one process renders them


def test_slurm_recipe_of_the_docs_composes():
    """The multi-node command of docs/distributed.md composes: submitit's Slurm launcher with its task layout."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed")
    from hydra import compose, initialize_config_dir

    text = (REPO / "docs" / "distributed.md").read_text()
    command = text[text.index("python train.py -m hydra/launcher=submitit_slurm"):]
    command = command[:command.index("```")].split("#")[0]
    tokens = [t for t in command.replace("\\\n", " ").split() if t not in ("python", "train.py", "-m")]
    overrides = [t.replace("<partition>", "gpu").replace("seed=0,1,2", "seed=0") for t in tokens]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert cfg.device == "cuda" and cfg.trainer.batch_rays_scope == "rank"
