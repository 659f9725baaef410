"""The W&B logger in offline mode, read back from its ``.wandb`` files: what a training run sends is what W&B got."""
from __future__ import annotations

import struct
import time

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose_train

from nerfexp.loggers.wandb_logger import WandbLogger, resolve_mode, run_identity
from nerfexp.loggers.wandb_offline import (OfflineRunError, iter_chunks, offline_run_dirs, read_history, read_run,
                                   wait_until_complete, wandb_file)

JOB = {"sweep_dir": "/tmp/multirun/2026-11-23/10-00-00", "overrides": ["sampler.n_samples=16", "optim.lr=1e-3"],
       "num": 1}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def log_like_the_trainer(logger: WandbLogger, val: float) -> None:
    for step in (10, 20):
        logger.log({"loss": 0.1 / step, "train_psnr": 20.0 + step, "lr": 5e-4, "rays_per_s": 1e4, "time_s": step / 10},
                   step)
    logger.log_image("val/panel", np.full((8, 24, 3), 0.5, dtype=np.float32), 20)
    logger.log({"val_psnr": val, "time_s": 2.0}, 20)
    logger.log_table("eval/per_view", ["frame", "psnr", "ssim", "lpips"], [["r_0", 21.0, 0.8, None]])
    logger.log({"test_psnr": val - 1.0, "test_ssim": 0.8, "time_s": 2.0}, 20)


def test_two_runs_in_one_process_are_separate_and_complete(tmp_path):
    ids = []
    for k, val in enumerate((21.5, 23.5)):
        run_dir = tmp_path / str(k)
        logger = WandbLogger(run_dir, run_config={"sampler": {"n_samples": 16 + k}}, job={**JOB, "num": k})
        log_like_the_trainer(logger, val)
        logger.finish()
        logger.finish()  # a second finish is harmless
        run = read_run(run_dir)
        ids.append(run.run_id)
        assert run.path.is_relative_to(run_dir / "wandb")
        assert run.group == "10-00-00" and run.name == f"10-00-00-{k}"
        assert run.tags[:2] == ["sampler.n_samples=16", "optim.lr=1e-3"]
        assert len(run.tags) == 3 and run.tags[2].startswith("config:")  # the seed-less configuration
        assert run.config["sampler"] == {"n_samples": 16 + k} and run.exit_code == 0
        history = read_history(run_dir)
        assert [r["_step"] for r in history] == [10, 20]
        last = history[-1]
        # the table and the test metrics logged after it stay at the last step instead of being dropped
        assert last["val_psnr"] == val and last["test_psnr"] == val - 1.0
        assert last["eval/per_view"]["_type"] == "table-file" and last["eval/per_view"]["nrows"] == 1
        assert last["val/panel"]["_type"] == "image-file" and last["val/panel"]["width"] == 24
        assert history[0]["loss"] == pytest.approx(0.01)
    assert ids[0] != ids[1]


def test_a_run_left_open_is_finished_by_the_next(tmp_path):
    """A crashed multirun job never calls finish(); the next job's init must close it and start a new run."""
    first = WandbLogger(tmp_path / "a")
    first.log({"loss": 1.0}, 1)
    second = WandbLogger(tmp_path / "b")
    second.log({"loss": 2.0}, 1)
    second.finish()
    assert first.run_id != second.run_id
    assert wait_until_complete(wandb_file(tmp_path / "a"))  # the open run got its exit record
    assert [r["loss"] for r in read_history(tmp_path / "a")] == [1.0]
    assert [r["loss"] for r in read_history(tmp_path / "b")] == [2.0]


def test_mode_comes_from_the_environment_and_defaults_to_offline(monkeypatch):
    assert resolve_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(None) == "disabled" and resolve_mode("online") == "online"
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_mode(None) == "offline"
    with pytest.raises(ValueError, match="logger.mode='onlin'"):
        resolve_mode("onlin")


def test_single_runs_are_named_after_their_dir_and_tags_fit_wandb(tmp_path):
    name, group, tags = run_identity(tmp_path / "10-00-00", {"overrides": ["x=" + "9" * 100, "y=1"]}, None, None,
                                     ["base", "y=1"])
    assert name == "10-00-00" and group is None
    assert tags == ["base", "y=1", "x=" + "9" * 62]


def test_jobs_differing_only_in_seed_share_a_configuration_tag(tmp_path):
    def tags(overrides):
        return run_identity(tmp_path, {"sweep_dir": str(tmp_path / "12-00-00"), "num": 0, "overrides": overrides},
                            None, None, None)[2]

    config = [t for t in tags(["seed=0", "optim.lr=1e-3"]) if t.startswith("config:")]
    assert len(config) == 1
    assert config[0] in tags(["optim.lr=1e-3", "seed=2"])  # another seed, same configuration
    assert config[0] not in tags(["seed=0", "optim.lr=3e-3"])


def test_records_longer_than_a_block_are_reassembled(tmp_path):
    """Values over 32 KiB are split into FIRST/MIDDLE/LAST fragments across log blocks."""
    logger = WandbLogger(tmp_path, run_config={"note": "n" * 100_000})
    for step in range(1, 400):
        logger.log({"loss": 1.0 / step, "text": "t" * 300}, step)
    logger.finish()
    run = read_run(tmp_path)
    assert run.config["note"] == "n" * 100_000
    assert [r["_step"] for r in run.history] == list(range(1, 400))
    assert wandb_file(tmp_path).stat().st_size > 3 * 32768


def test_reading_names_what_is_missing_or_broken(tmp_path):
    with pytest.raises(OfflineRunError, match="no wandb/offline-run"):
        read_history(tmp_path)
    bad = tmp_path / "wandb" / "offline-run-20260101_000000-abc" / "run-abc.wandb"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PK\x03\x04 not a log")
    with pytest.raises(OfflineRunError, match="not a .wandb file"):
        read_history(tmp_path)
    record = b"\x08\x01"
    header = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
    bad.write_bytes(header + struct.pack("<IHB", 12345, len(record), 1) + record)
    with pytest.raises(OfflineRunError, match="checksum"):
        list(iter_chunks(bad))


def test_config_made_by_hydra_reaches_wandb_as_nested_values(tmp_path):
    """The trainer builds the logger with ``instantiate``, which hands ``run_config`` over as a DictConfig."""
    cfg = compose_train(["model=nerf", "logger=wandb", "sampler.n_samples=16"])
    logger = instantiate(cfg.logger, run_dir=tmp_path, run_config=OmegaConf.to_container(cfg, resolve=True),
                         job=JOB, _recursive_=False)
    logger.finish()
    run = read_run(tmp_path)
    assert run.config["sampler"]["n_samples"] == 16 and run.config["trainer"]["batch_rays"] == 1024
    assert run.project == "nerfexp" and run.group == "10-00-00"


def test_a_resumed_run_is_read_back_whole(tmp_path):
    """Resuming (``run_id``) offline writes a second offline-run folder with the same id; both parts are one run."""
    first = WandbLogger(tmp_path)
    for step in (10, 20, 30):
        first.log({"loss": 1.0 / step}, step)
    first.finish()
    other = WandbLogger(tmp_path / "elsewhere")  # a different run in a nested dir is not mixed in
    other.finish()
    start = int(time.time())
    while int(time.time()) == start:  # offline-run folders are named to the second
        time.sleep(0.05)
    resumed = WandbLogger(tmp_path, run_id=first.run_id)
    for step in (20, 30, 40):  # resumed from the step-20 checkpoint: 20 and 30 are logged again
        resumed.log({"loss": 2.0 / step}, step)
        if step == 30:
            resumed.log({"test_psnr": 21.0}, step)
    resumed.finish()
    run = read_run(tmp_path)
    assert run.run_id == first.run_id and len(offline_run_dirs(tmp_path)) == 2
    # rows of the same step are merged, the later values winning
    assert [(r["_step"], r["loss"]) for r in run.history] == [(10, 0.1), (20, 0.1), (30, 2.0 / 30), (40, 0.05)]
    assert run.history[2]["test_psnr"] == 21.0


def test_videos_and_meshes_reach_wandb_as_media(tmp_path):
    """evaluate.py logs the render-path video and the extracted mesh (PLY, which W&B cannot show: sent as OBJ)."""
    import imageio.v3 as iio
    from plyfile import PlyData, PlyElement

    frames = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    frames[:, 4:12, 4:12] = 200
    iio.imwrite(tmp_path / "video.gif", frames, loop=0)
    v = np.array([(0, 0, 0, 255, 0, 0), (1, 0, 0, 0, 255, 0), (0, 1, 0, 0, 0, 255)],
                 dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    f = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")]).write(str(tmp_path / "mesh.ply"))
    logger = WandbLogger(tmp_path / "run")
    logger.log({"test_psnr": 20.0}, 100)
    logger.log_video("eval/render_path", tmp_path / "video.gif", fps=10)
    logger.log_mesh("eval/mesh", tmp_path / "mesh.ply")
    logger.finish()
    obj = (tmp_path / "mesh.obj").read_text().splitlines()
    assert obj[1:] == ["v 0.000000 0.000000 0.000000 1.0000 0.0000 0.0000", "v 1.000000 0.000000 0.000000 0.0000 "
                       "1.0000 0.0000", "v 0.000000 1.000000 0.000000 0.0000 0.0000 1.0000", "f 1 2 3"]
    last = read_history(tmp_path / "run")[-1]
    assert last["_step"] == 100 and last["test_psnr"] == 20.0
    assert last["eval/render_path"]["_type"] == "video-file"
    assert last["eval/mesh"]["_type"] == "object3D-file"
