"""The training loop: batches of rays from all training views, coarse + fine loss, validation, checkpoints."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import threading
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from nerfexp.checkpoint import (find_resume_dir, latest_checkpoint, load_checkpoint, rng_state, save_checkpoint,
                                truncate_metrics)
from nerfexp.compat import upgrade_run_config
from nerfexp.config import ConfigError, validate_config
from nerfexp.data.batcher import RayBatcher
from nerfexp.data.scene import SceneSplit, background_color, eval_background
from nerfexp.evaluate import evaluate_split, validation_views
from nerfexp.loggers.local import MetricsFile, NoLogger
from nerfexp.losses import training_loss
from nerfexp.kernels import prepare_cpu_kernels
from nerfexp.metrics import mse_to_psnr
from nerfexp.optim.build import build_optimizer
from nerfexp.optim.schedule import lr_at
from nerfexp.pipelines.base import Pipeline
from nerfexp.pipelines.build import build_pipeline
from nerfexp.runtime.allocator import keep_freed_memory
from nerfexp.runtime.amp import amp_dtype, autocast, grad_scaler
from nerfexp.runtime.distributed import (SINGLE, World, agree_max, average_gradients, barrier, broadcast_module,
                                         broadcast_object, close_world, device_for, gather_objects, init_world)
from nerfexp.runtime.provenance import provenance
from nerfexp.runtime.seeding import resolve_device, seed_everything
from nerfexp.viz.images import save_png
from nerfexp.viz.plots import center_ray, plot_ray_samples

log = logging.getLogger(__name__)
RANK_SEED_STRIDE = 1_000_003  # rank r > 0 seeds its random streams with seed + r * this (rank 0: seed itself)


class Trainer:
    """Owns the run's state (pipeline, optimizer, batcher, step, RNGs) and the loop over it.

    Args:
        cfg: the composed training config.
        run_dir: where everything of the run is written.
        job: multirun facts for the logger (see :func:`hydra_job_info`).
        checkpoint: a checkpoint dict to resume from exactly (model, optimizer, batcher, RNGs, step, logger id).
        world: this process's place in a data-parallel run (``torchrun``): every rank trains on its own share of
            each global batch of rays, gradients are averaged, rank 0 alone writes.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, job: dict | None = None, checkpoint: dict | None = None,
                 world: World = SINGLE):
        self.cfg, self.run_dir, self.world = cfg, run_dir, world
        tcfg = cfg.trainer
        if tcfg.get("threads"):
            torch.set_num_threads(int(tcfg.threads))
        seed_everything(cfg.seed)
        if tcfg.get("viewer") and world.is_main:  # a bad viewer key or a busy port stops before the data loads
            from nerfexp.view.server import check_port_free, check_viewer_config

            check_viewer_config(cfg.viewer)
            check_port_free(cfg.viewer.host, cfg.viewer.port)
        self.device = device_for(world, resolve_device(cfg.device))
        self.dataset = instantiate(cfg.dataset)
        self.train_split: SceneSplit = self.dataset.load("train")
        self.val_split: SceneSplit = self.dataset.load("val")
        check_disjoint({"train": self.train_split, "val": self.val_split})
        check_rays(cfg, self.train_split)
        self.init_model(cfg.seed)
        self.rank_batch, self.global_batch = batch_sizes(tcfg.batch_rays, tcfg.get("batch_rays_scope", "rank"),
                                                         world.size)
        # one batcher state on every rank: each global batch is the same everywhere and each rank trains on its
        # slice, so the ranks' rays are disjoint and cover every training ray once per epoch together
        self.batcher = RayBatcher(len(self.train_split), self.train_split.height, self.train_split.width,
                                  self.global_batch, tcfg.batching, tcfg.precrop_frac, tcfg.precrop_steps,
                                  seed=cfg.seed)
        self.bg_generator = torch.Generator().manual_seed(cfg.seed + 1 + RANK_SEED_STRIDE * world.rank)
        self.step = 0
        self.train_time = 0.0
        self.lr_scale = 1.0  # lowered by the NaN guard
        self.skipped_steps = 0
        self.train_points = 0  # field queries of training steps in this process (a tensor once counted)
        self.bad_in_row = 0
        self.restarts = 0
        self.stop_signal: str | None = None
        self.last_save_wall = time.monotonic()
        self.last_val: tuple[int, int, float] | None = None  # (step, views, PSNR) of the last validation
        logger_id = None
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
            logger_id = checkpoint.get("logger_run_id")
        self.metrics = MetricsFile(run_dir) if world.is_main else None
        self.logger = instantiate(cfg.logger, run_dir=run_dir,
                                  run_config=OmegaConf.to_container(cfg, resolve=True), job=job,
                                  **({"run_id": logger_id} if logger_id else {}),
                                  _recursive_=False) if world.is_main else NoLogger()
        # pixel data on the training device once, so a step gathers without host copies
        self.train_pixels = self.train_split.to(self.device)
        self.viewer = self.open_viewer() if tcfg.get("viewer") and world.is_main else None

    def open_viewer(self):
        """The live web viewer of ``trainer.viewer=true`` (:mod:`nerfexp.view.live`)."""
        from nerfexp.view.live import LiveViewer
        from nerfexp.view.server import scene_extras

        path, box = scene_extras(self.dataset, self.train_split, self.cfg.dataset)
        return LiveViewer(self.cfg.viewer, self.pipeline, self.train_split,
                          eval_background(self.cfg.dataset.background), self.device, path, box,
                          f"nerfexp: training {self.run_dir.name}")

    def init_model(self, seed: int) -> None:
        """Fresh pipeline and optimizer from ``seed`` (also used by stuck-start restarts)."""
        torch.manual_seed(seed)
        self.pipeline: Pipeline = build_pipeline(self.cfg).to(self.device)
        broadcast_module(self.pipeline, self.world)
        if self.world.rank:  # rank 0 keeps the single-process random stream; the others draw their own
            seed_everything(seed + RANK_SEED_STRIDE * self.world.rank)
        prepare_cpu_kernels(self.pipeline, self.device)
        self.pipeline.amp_dtype = amp_dtype(self.cfg.trainer.get("amp", "auto"), self.device)
        self.scaler = grad_scaler(self.device, self.pipeline.amp_dtype)
        self.optimizer = build_optimizer(self.cfg.optim, self.pipeline, self.device)
        self.params = [p for p in self.pipeline.parameters() if p.requires_grad]

    # -- one step -----------------------------------------------------------------------------------------------
    def progress(self) -> float:
        tcfg = self.cfg.trainer
        p = self.step / max(tcfg.max_steps, 1)
        if tcfg.max_time_s:
            p = max(p, self.train_time / tcfg.max_time_s)
        return p

    def current_lr(self) -> float:
        return lr_at(self.progress(), self.cfg.optim.lr, self.cfg.optim.lr_final) * self.lr_scale

    def compute_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and fine-pass MSE on the next batch of rays."""
        split = self.train_pixels
        px = self.batcher.next(self.step)
        mine = slice(self.world.rank * self.rank_batch, (self.world.rank + 1) * self.rank_batch)
        img, i, j = (px.image[mine].to(self.device), px.i[mine].to(self.device), px.j[mine].to(self.device))
        rays = split.pixel_rays(img, i, j)
        bg = background_color(self.cfg.dataset.background, len(img), self.bg_generator).to(self.device)
        target = split.pixel_colors(img, i, j, bg)
        self.pipeline.train()
        with autocast(self.device, self.pipeline.amp_dtype):
            out = self.pipeline(rays, bg, training=True)
        out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
        if "ray_index" in out:  # the sampler's budget kept a subset of the batch
            target = target[out["ray_index"]]
        mask_weight = self.cfg.trainer.get("mask_loss_weight", 0.0)
        mask = None
        if mask_weight:
            mask = split.alphas[img, j, i, 0]
            if "ray_index" in out:
                mask = mask[out["ray_index"]]
        loss, mse = training_loss(out, target, self.cfg.trainer.coarse_loss_weight, mask, mask_weight)
        return loss, mse

    def train_step(self) -> tuple[float, float, bool]:
        """One optimisation step; returns (loss, batch PSNR of the fine output, whether the update was applied).

        A non-finite loss or gradient skips the update (the step still counts, so a run always ends)."""
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        try:
            if self.pipeline.update_state(self.step) and self.world.active:
                # the grid was refreshed from random points drawn per rank: every rank marches rank 0's
                broadcast_module(self.pipeline, self.world, parameters=False)
            points_before = self.pipeline.points_queried
            loss, mse = self.compute_loss()
            self.train_points = self.pipeline.points_queried - points_before + self.train_points
            self.optimizer.zero_grad(set_to_none=True)
            finite = bool(torch.isfinite(loss))
            if finite:
                self.scaler.scale(loss).backward()
            if self.world.active:  # every rank joins, finite or not, and all skip if any loss was not finite
                bad_ranks, = average_gradients(self.params, self.world, [0.0 if finite else 1.0])
                finite = bad_ranks == 0
            if finite:
                # with fp16 the scaler owns overflow: it skips that update and lowers its scale
                if not self.scaler.is_enabled():
                    grads = [p.grad for p in self.pipeline.parameters() if p.grad is not None]
                    # NaN and inf survive a sum: one reduction per tensor instead of isfinite + all (on a hash
                    # table that cost 7 ms a step on the CPU); a sum overflows only with gradients beyond ~1e31,
                    # no more usable than non-finite ones
                    finite = bool(torch.isfinite(torch.stack([g.sum() for g in grads]).sum()))
        except torch.OutOfMemoryError:
            per_ray = self.pipeline.state().get("samples_per_ray", 0)
            raise RuntimeError(f"out of memory in a training step with trainer.batch_rays="
                               f"{self.cfg.trainer.batch_rays} and {per_ray:.0f} samples per ray: lower "
                               "trainer.batch_rays first (or the sampler's sample counts)") from None
        if finite:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.step += 1
        return float(loss.detach()), mse_to_psnr(mse.detach()), finite

    # -- validation, checkpoints --------------------------------------------------------------------------------
    def validate(self, n_views: int | None = None) -> float:
        """Mean PSNR over the first ``n_views`` (default ``trainer.val_views``) validation views; saves a panel
        of the first. Validation views are never test views: what is chosen on them is not chosen on test."""
        self.pipeline.eval()
        bg = eval_background(self.cfg.dataset.background)
        split = self.val_split
        n_views = self.cfg.trainer.val_views if n_views is None else n_views
        score, image = validation_views(self.pipeline, split, bg, self.cfg.eval.chunk, self.device, n_views,
                                        self.world)
        if not self.world.is_main:
            return score
        save_png(self.run_dir / "val" / f"step_{self.step:08d}.png", image)
        self.logger.log_image("val/panel", image, self.step)
        if self.cfg.trainer.get("plot_rays", False):
            ray_png = plot_ray_samples(self.pipeline, center_ray(split, 0).to(self.device),
                                       self.run_dir / "val" / f"rays_step_{self.step:08d}.png",
                                       bg.to(self.device), title=f"step {self.step}: centre ray of {split.names[0]}")
            self.logger.log_image("val/ray_samples", iio.imread(ray_png)[..., :3] / 255.0, self.step)
        return score

    def state_dict(self) -> dict:
        return {"step": self.step, "train_time": self.train_time, "pipeline": self.pipeline.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "batcher": self.batcher.state_dict(),
                "bg_generator": self.bg_generator.get_state(), "rng": rng_state(), "lr_scale": self.lr_scale,
                # every rank's random state, so each continues its own stream (rank 0's is also "rng" above)
                "rank_rng": gather_objects({"rng": rng_state(), "bg_generator": self.bg_generator.get_state()},
                                           self.world),
                "world_size": self.world.size,
                "skipped_steps": self.skipped_steps, "restarts": self.restarts,
                "logger_run_id": getattr(self.logger, "run_id", None) if hasattr(self, "logger") else None,
                "config": OmegaConf.to_container(self.cfg, resolve=True)}

    def load_state_dict(self, state: dict) -> None:
        """Restore everything :meth:`state_dict` saved, RNGs included, so training continues bit for bit."""
        self.pipeline.load_state_dict(state["pipeline"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.batcher.load_state_dict(state["batcher"])
        self.step, self.train_time = int(state["step"]), float(state["train_time"])
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.restarts = int(state.get("restarts", 0))
        ranks = state.get("rank_rng") or [{"rng": state["rng"], "bg_generator": state["bg_generator"]}]
        if self.world.rank >= len(ranks):
            # resumed on more ranks than wrote the checkpoint: this rank starts a stream of its own
            log.info("rank %d: the checkpoint holds %d ranks' random states; this rank draws a fresh one",
                     self.world.rank, len(ranks))
            seed_everything(self.cfg.seed + RANK_SEED_STRIDE * self.world.rank + self.step)
            return
        self.bg_generator.set_state(ranks[self.world.rank]["bg_generator"])
        rng = ranks[self.world.rank]["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.pipeline.parameters())

    def save(self) -> Path | None:
        """Checkpoint now, unless the weights are not finite (a checkpoint never holds NaN or Inf)."""
        self.last_save_wall = time.monotonic()
        if not self.weights_finite():
            log.warning("step %d: weights are not finite; checkpoint not written", self.step)
            return None
        state = self.state_dict()  # every rank: it gathers the ranks' random states
        path = None
        if self.world.is_main:
            path = save_checkpoint(state, self.run_dir / "checkpoints", self.step, self.cfg.trainer.ckpt_keep)
        barrier(self.world)  # written before any rank may read it back (NaN recovery)
        return path

    def log(self, metrics: dict) -> None:
        if self.metrics is not None:
            self.metrics.log(metrics, self.step)
        self.logger.log(metrics, self.step)

    # -- recovery -----------------------------------------------------------------------------------------------
    def recover_from_nan(self) -> None:
        """After ``nan_patience`` bad steps in a row: back to the last good checkpoint with a lower learning rate."""
        tcfg = self.cfg.trainer
        path = latest_checkpoint(self.run_dir / "checkpoints")
        new_scale = self.lr_scale * tcfg.nan_lr_factor
        skipped = self.skipped_steps
        if path is not None:
            self.load_state_dict(load_checkpoint(path, self.device))
        else:
            self.init_model(self.cfg.seed)
            self.step = 0
        self.lr_scale, self.skipped_steps, self.bad_in_row = new_scale, skipped, 0
        log.warning("%d non-finite steps in a row: restored %s, learning rate scaled by %g", tcfg.nan_patience,
                    path.name if path else "the initial weights", new_scale)
        self.log({"nan_recovery": 1, "lr_scale": new_scale})

    def maybe_restart(self) -> bool:
        """Stuck-start check at ``warmup_steps``: re-initialise with a new seed while val PSNR is too low."""
        tcfg = self.cfg.trainer
        if not tcfg.warmup_steps or self.step != tcfg.warmup_steps or self.restarts >= tcfg.n_restarts:
            return False
        val = self.validate()
        if val >= tcfg.warmup_min_psnr:
            return False
        self.restarts += 1
        seed = self.cfg.seed + 1000 * self.restarts
        log.warning("val PSNR %.2f dB < trainer.warmup_min_psnr=%.2f after %d steps: restart %d/%d with seed %d",
                    val, tcfg.warmup_min_psnr, self.step, self.restarts, tcfg.n_restarts, seed)
        self.log({"restart": self.restarts, "val_psnr": val, "restart_seed": seed})
        self.init_model(seed)
        self.step = 0
        return True

    def checkpoint_due(self) -> bool:
        """Every ``trainer.ckpt_every`` steps, and every ``trainer.ckpt_every_s`` seconds of wall time, so a
        killed run loses minutes at most whatever its step rate."""
        tcfg = self.cfg.trainer
        by_step = bool(tcfg.ckpt_every) and self.step % tcfg.ckpt_every == 0
        return by_step or self.save_time_due

    def clock_due(self) -> bool:
        every_s = self.cfg.trainer.get("ckpt_every_s")
        return bool(every_s) and time.monotonic() - self.last_save_wall >= every_s

    def agree(self, dt: float) -> float:
        """Ranks agree on this step's time (the slowest rank's), on stopping (any rank's signal) and on a
        checkpoint by the clock, so all stop, validate and save at the same step. Returns the step time."""
        self.save_time_due = self.clock_due()
        if not self.world.active:
            return dt
        dt, stop, due = agree_max([dt, float(self.stop_signal is not None), float(self.save_time_due)], self.world)
        if stop and self.stop_signal is None:
            self.stop_signal = "another rank's signal"
        self.save_time_due = bool(due)
        return dt

    def log_progress(self, loss: float, batch_psnr: float, rays_s: float, bar: tqdm) -> None:
        """The training curves of this step: loss, batch PSNR, lr, speed, and the sampler's and renderer's state."""
        self.log({"loss": loss, "train_psnr": batch_psnr, "lr": self.optimizer.param_groups[0]["lr"],
                  "rays_per_s": rays_s, "time_s": self.train_time, "skipped_steps": self.skipped_steps,
                  **self.pipeline.state()})
        bar.set_postfix(step=self.step, loss=f"{loss:.4f}", psnr=f"{batch_psnr:.2f}", rays_s=f"{rays_s:.0f}")

    def validate_and_log(self, bar: tqdm) -> None:
        tcfg = self.cfg.trainer
        val = self.validate()
        self.last_val = (self.step, min(tcfg.val_views, len(self.val_split)), val)
        self.log({"val_psnr": val, "time_s": self.train_time})
        if self.world.is_main:
            bar.write(f"step {self.step}: val PSNR {val:.2f} dB ({self.train_time:.0f} s of training)")

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signal.Signals(signum).name

    # -- the loop -----------------------------------------------------------------------------------------------
    def fit(self, stop_at: int | None = None) -> dict:
        """Train until ``max_steps``, ``max_time_s``, a SIGINT/SIGTERM, or step ``stop_at`` (then no final eval)."""
        tcfg = self.cfg.trainer
        max_time = tcfg.max_time_s or math.inf
        in_main = threading.current_thread() is threading.main_thread()
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
        # a time-limited run shows progress in seconds of training, a step-limited one in steps
        timed = bool(tcfg.max_time_s)
        bar = tqdm(total=round(tcfg.max_time_s) if timed else tcfg.max_steps, unit="s" if timed else "step",
                   desc="train", dynamic_ncols=True, mininterval=1.0,
                   initial=int(self.train_time) if timed else self.step, disable=not self.world.is_main)
        window_rays, window_time = 0, 0.0
        # this process's share of the work (a resumed run counts from its resume)
        points_from, time_from, step_from = self.train_points, self.train_time, self.step
        self.save_time_due = False
        wall0 = time.monotonic()
        try:
            while (self.step < tcfg.max_steps and self.train_time < max_time and self.stop_signal is None
                   and (stop_at is None or self.step < stop_at)):
                t0 = time.perf_counter()
                loss, batch_psnr, applied = self.train_step()
                dt = self.agree(time.perf_counter() - t0)
                self.train_time += dt
                window_rays += self.global_batch
                window_time += dt
                bar.update(int(self.train_time) - bar.n if timed else 1)  # whole seconds on the bar
                if self.viewer is not None:
                    self.viewer.after_step(self.pipeline, self.step, loss, batch_psnr, self.rank_batch, dt,
                                           lambda: self.stop_signal is not None)
                if not applied:
                    self.skipped_steps += 1
                    self.bad_in_row += 1
                    self.log({"skipped_steps": self.skipped_steps, "loss": None})
                    if self.bad_in_row >= tcfg.nan_patience:
                        self.recover_from_nan()
                    continue
                self.bad_in_row = 0
                if self.step % tcfg.log_every == 0:
                    self.log_progress(loss, batch_psnr, window_rays / max(window_time, 1e-9), bar)
                    window_rays, window_time = 0, 0.0
                if self.maybe_restart():
                    continue
                if tcfg.val_every and self.step % tcfg.val_every == 0:
                    self.validate_and_log(bar)
                if self.checkpoint_due():
                    self.save()
        finally:
            bar.close()
            for s, h in old_handlers.items():
                signal.signal(s, h)
        self.save()
        points = sum(gather_objects(int(self.train_points - points_from), self.world))  # all ranks' queries
        summary = {"steps": self.step, "train_time_s": self.train_time,
                   "rays_per_s": self.step * self.global_batch / max(self.train_time, 1e-9),
                   "points_per_s": points / max(self.train_time - time_from, 1e-9),
                   "samples_per_ray": points / max((self.step - step_from) * self.global_batch, 1),
                   "skipped_steps": self.skipped_steps, "restarts": self.restarts,
                   "world_size": self.world.size, "batch_rays_per_rank": self.rank_batch,
                   "global_batch_rays": self.global_batch, "wall_s": time.monotonic() - wall0}
        summary["wall_rays_per_s"] = (self.step - step_from) * self.global_batch / max(summary["wall_s"], 1e-9)
        if self.viewer is not None:
            summary["viewer_render_s"] = self.viewer.render_seconds
        if self.stop_signal is not None or (stop_at is not None and self.step >= stop_at
                                            and self.step < tcfg.max_steps):
            summary["interrupted"] = self.stop_signal or f"stop_at={stop_at}"
            log.warning("training stopped at step %d (%s); checkpoint saved, resume with resume=%s", self.step,
                        summary["interrupted"], self.run_dir)
            self.close()
            return summary
        summary.update(self.final_report())
        if self.world.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        self.close()
        return summary

    def final_report(self) -> dict:
        """After the last step: validation PSNR over every val view (what sweepers optimise, never a test view),
        the files of each split, and, with ``trainer.eval_at_end``, the test split's metrics and images."""
        tcfg = self.cfg.trainer
        summary: dict = {}
        if self.last_val is not None and self.last_val[:2] == (self.step, len(self.val_split)):
            summary["val_psnr"] = self.last_val[2]  # every validation view was rendered at this very step
        else:
            summary["val_psnr"] = self.validate(len(self.val_split))
            self.log({"val_psnr": summary["val_psnr"], "time_s": self.train_time})
        test_split = self.dataset.load(self.cfg.eval.split)
        splits = {"train": self.train_split, "val": self.val_split, self.cfg.eval.split: test_split}
        check_disjoint(splits)
        summary["splits"] = {name: split.sources or split.names for name, split in splits.items()}
        summary["selection"] = ("hyperparameters and restarts are chosen on val_psnr; "
                                f"{self.cfg.eval.split} is rendered once at the end and chooses nothing")
        if tcfg.eval_at_end:
            test = evaluate_split(self.pipeline, test_split,
                                  self.cfg.dataset.background, self.run_dir / "eval", self.cfg.eval.chunk,
                                  self.device, self.cfg.eval.max_views, world=self.world)
            if test is None:  # another rank: rank 0 holds the views and writes the report
                return summary
            summary.update(test_psnr=test["psnr"], test_ssim=test["ssim"], test_lpips=test["lpips"],
                           test_render=test["render"])
            self.logger.log_table("eval/per_view", ["frame", "psnr", "ssim", "lpips"],
                                  [[v["frame"], v["psnr"], v["ssim"], v["lpips"]] for v in test["per_view"]])
            self.log({"test_psnr": test["psnr"], "test_ssim": test["ssim"], "time_s": self.train_time})
        return summary

    def close(self) -> None:
        if self.viewer is not None:
            self.viewer.close()
            self.viewer = None
        if self.metrics is not None:
            self.metrics.close()
        self.logger.finish()


def batch_sizes(batch_rays: int, scope: str, world_size: int) -> tuple[int, int]:
    """Rays per rank and per optimisation step: ``trainer.batch_rays`` counts per rank (``scope=rank``, the global
    batch grows with the ranks) or per step (``scope=global``, split evenly over the ranks)."""
    if scope == "rank":
        return batch_rays, batch_rays * world_size
    if scope != "global":
        raise ConfigError(f"trainer.batch_rays_scope={scope!r}: must be rank or global")
    if batch_rays % world_size:
        raise ConfigError(f"trainer.batch_rays={batch_rays} with trainer.batch_rays_scope=global does not split "
                          f"evenly over {world_size} ranks: give a multiple of {world_size}")
    return batch_rays // world_size, batch_rays


def check_disjoint(splits: dict[str, SceneSplit]) -> None:
    """Raise when a frame is in two splits (by file, else by name): validation on a test view would choose
    hyperparameters on the test set."""
    seen: dict[str, str] = {}
    for name, split in splits.items():
        for frame in split.sources or split.names:
            other = seen.setdefault(frame, name)
            if other != name:
                raise ConfigError(f"frame {frame} is in both the {other} and the {name} split: splits must be "
                                  "disjoint (check the dataset's split keys, e.g. dataset.n_val)")


def check_rays(cfg: DictConfig, split: SceneSplit) -> None:
    """Settings that clash with the dataset's rays stop the run before any work, naming the keys."""
    sampler = cfg.get("sampler", {})
    if sampler.get("lindisp") and (split.ndc or split.near <= 0):
        where = "dataset.ndc=true (rays start at t=0)" if split.ndc else f"near={split.near} (dataset.near)"
        raise ConfigError(f"sampler.lindisp=true with {where}: disparity 1/t is infinite at the start of each "
                          "ray; set sampler.lindisp=false (NDC samples are already uniform in disparity)")


def hydra_job_info() -> dict | None:
    """Multirun facts of the current Hydra job (sweep dir, overrides, job number), or None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return {"overrides": list(hc.overrides.task)}
    return {"sweep_dir": hc.sweep.dir, "overrides": list(hc.overrides.task), "num": hc.job.num}


def resolve_run(cfg: DictConfig, run_dir: Path) -> tuple[DictConfig, Path, Path | None]:
    """The config, run dir and checkpoint a run starts from: a new run in ``run_dir``, or with ``resume=<run dir>``
    (or ``resume=auto``) that run continued from its last checkpoint."""
    if not cfg.get("resume"):
        return cfg, run_dir, None
    resume_dir = find_resume_dir(str(cfg.resume), cfg, run_dir)
    ckpt_path = latest_checkpoint(resume_dir / "checkpoints") if resume_dir else None
    if ckpt_path is None and resume_dir is not None:
        # killed before its first checkpoint: run it again from the start, in its own dir with its own config
        resume = cfg.resume
        cfg = upgrade_run_config(OmegaConf.load(resume_dir / "config.yaml"))
        cfg.resume = resume
        validate_config(cfg)
        truncate_metrics(resume_dir, -1)
        log.warning("resume=%s: that run has no checkpoint yet; restarting it from step 0 in %s with its "
                    "saved config", resume, resume_dir)
        return cfg, resume_dir, None
    if ckpt_path is None:
        log.warning("resume=%s: no run with a checkpoint to continue; starting a new run", cfg.resume)
        return cfg, run_dir, None
    return cfg, resume_dir, ckpt_path


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Entry point of ``train.py``: write the resolved config and provenance into ``run_dir``, train, evaluate.

    With ``resume=<run dir>`` (or ``resume=auto``) training continues in that run dir from its last checkpoint.
    Under ``torchrun`` (or Slurm tasks) the processes train one run together: rank 0 picks the run dir (and what
    to resume) and alone writes into it; the others return an empty summary."""
    keep_freed_memory()
    validate_config(cfg)
    world = init_world(resolve_device(cfg.device))
    try:
        return train_in_world(cfg, run_dir, world)
    finally:
        close_world(world)


def train_in_world(cfg: DictConfig, run_dir: Path, world: World) -> dict:
    job = hydra_job_info()
    if world.active and os.environ.get("TORCHELASTIC_RUN_ID") and job and "num" in job:
        raise ConfigError("torchrun trains one run; for a sweep of data-parallel runs use a launcher that starts "
                          "the ranks per job: hydra/launcher=submitit_slurm hydra.launcher.tasks_per_node=N "
                          "(docs/distributed.md)")
    if not world.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # one log: rank 0's
    ckpt_path = None
    if world.is_main:
        cfg, run_dir, ckpt_path = resolve_run(cfg, run_dir)
    if world.active:  # rank 0's choice of run dir, config and checkpoint (Hydra's dir names differ by the second)
        chosen = broadcast_object((OmegaConf.to_container(cfg), str(run_dir), ckpt_path), world)
        cfg, run_dir, ckpt_path = OmegaConf.create(chosen[0]), Path(chosen[1]), chosen[2]
    checkpoint = None
    if ckpt_path is not None:
        checkpoint = load_checkpoint(ckpt_path)
        if world.is_main:
            truncate_metrics(run_dir, int(checkpoint["step"]))
        log.info("resuming %s from %s (step %d, written by %d rank(s), continued by %d)", run_dir,
                 ckpt_path.name, checkpoint["step"], checkpoint.get("world_size", 1), world.size)
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    trainer = Trainer(cfg, run_dir, job=job, checkpoint=checkpoint, world=world)
    if world.is_main:
        (run_dir / "provenance.json").write_text(json.dumps({**provenance(str(trainer.device)),
                                                             "world_size": world.size}, indent=2))
    log.info("run dir %s; %d training views of %dx%d on %s; %d parameters", run_dir, len(trainer.train_split),
             trainer.train_split.width, trainer.train_split.height, trainer.device,
             sum(p.numel() for p in trainer.pipeline.parameters()))
    if world.active:
        log.info("data-parallel: %d ranks; trainer.batch_rays=%d is per %s (trainer.batch_rays_scope=%s): %d rays "
                 "per rank, global batch %d rays per step", world.size, cfg.trainer.batch_rays,
                 "rank" if cfg.trainer.get("batch_rays_scope", "rank") == "rank" else "step (global)",
                 cfg.trainer.get("batch_rays_scope", "rank"), trainer.rank_batch, trainer.global_batch)
    summary = trainer.fit()
    if not world.is_main:
        return {}
    if "test_psnr" in summary:
        log.info("final test PSNR %.2f dB (SSIM %.4f) after %d steps, %.0f s of training, %.0f rays/s",
                 summary["test_psnr"], summary["test_ssim"], summary["steps"], summary["train_time_s"],
                 summary["rays_per_s"])
        print(f"test PSNR: {summary['test_psnr']:.2f} dB")
    return summary
