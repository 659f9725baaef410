"""The training loop: batches of rays from all training views, coarse + fine loss, validation, checkpoints."""
from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from nerfexp.allocator import keep_freed_memory
from nerfexp.cameras import rays_from_pixels
from nerfexp.checkpoint import save_checkpoint
from nerfexp.data.batcher import RayBatcher
from nerfexp.data.scene import SceneSplit, background_color, eval_background
from nerfexp.evaluate import evaluate_split, render_image
from nerfexp.loggers import MetricsFile
from nerfexp.metrics import mse_to_psnr, psnr
from nerfexp.pipeline import NeRFPipeline, build_pipeline
from nerfexp.provenance import provenance
from nerfexp.seeding import resolve_device, seed_everything
from nerfexp.visualize import colorize_depth, panel, save_png

log = logging.getLogger(__name__)


def lr_at(progress: float, lr: float, lr_final: float) -> float:
    """Exponential decay from ``lr`` (progress 0) to ``lr_final`` (progress 1)."""
    return lr * (lr_final / lr) ** min(max(progress, 0.0), 1.0)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


class Trainer:
    """Owns the run's state (pipeline, optimizer, batcher, step) and the loop over it."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir
        tcfg = cfg.trainer
        if tcfg.get("threads"):
            torch.set_num_threads(int(tcfg.threads))
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.dataset = instantiate(cfg.dataset)
        self.train_split: SceneSplit = self.dataset.load("train")
        self.val_split: SceneSplit = self.dataset.load("val")
        self.pipeline: NeRFPipeline = build_pipeline(cfg).to(self.device)
        self.optimizer = torch.optim.Adam(self.pipeline.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                          eps=cfg.optim.eps)
        self.batcher = RayBatcher(len(self.train_split), self.train_split.height, self.train_split.width,
                                  tcfg.batch_rays, tcfg.batching, tcfg.precrop_frac, tcfg.precrop_steps,
                                  seed=cfg.seed)
        self.bg_generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.train_time = 0.0
        self.metrics = MetricsFile(run_dir)
        self.logger = instantiate(cfg.logger, run_dir=run_dir, 
                                  run_config=OmegaConf.to_container(cfg, resolve=True), _recursive_=False)
        # pixel data on the training device once, so a step gathers without host copies
        self.train_pixels = self.train_split.to(self.device)
        self.intr = self.train_split.intrinsics.as_tensor().to(self.device)

    # -- one step -----------------------------------------------------------------------------------------------
    def progress(self) -> float:
        tcfg = self.cfg.trainer
        p = self.step / max(tcfg.max_steps, 1)
        if tcfg.max_time_s:
            p = max(p, self.train_time / tcfg.max_time_s)
        return p

    def train_step(self) -> tuple[float, float]:
        """One optimisation step; returns (loss, PSNR of the fine output on the batch)."""
        tcfg, split = self.cfg.trainer, self.train_pixels
        lr = lr_at(self.progress(), self.cfg.optim.lr, self.cfg.optim.lr_final)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        px = self.batcher.next(self.step)
        img, i, j = px.image.to(self.device), px.i.to(self.device), px.j.to(self.device)
        rays = rays_from_pixels(split.c2w[img], self.intr, i, j, split.near, split.far)
        mode = self.cfg.dataset.background
        bg = background_color(mode, len(img), self.bg_generator).to(self.device)
        target = split.pixel_colors(img, i, j, bg)
        self.pipeline.train()
        out = self.pipeline(rays, bg, training=True)
        mse = torch.mean((out["rgb"] - target) ** 2)
        loss = mse
        if "rgb_coarse" in out:
            loss = loss + tcfg.coarse_loss_weight * torch.mean((out["rgb_coarse"] - target) ** 2)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return float(loss.detach()), mse_to_psnr(mse.detach())

    # -- validation, checkpoints --------------------------------------------------------------------------------
    def validate(self) -> float:
        """Mean PSNR over the first ``trainer.val_views`` validation views; saves a panel of the first."""
        self.pipeline.eval()
        bg = eval_background(self.cfg.dataset.background)
        split = self.val_split
        scores = []
        for k in range(min(self.cfg.trainer.val_views, len(split))):
            out = render_image(self.pipeline, split, k, bg, self.cfg.eval.chunk, self.device)
            gt = split.composited(k, bg)
            scores.append(psnr(out["rgb"], gt))
            if k == 0:
                depth = colorize_depth(out["depth"] / out["acc"].clamp(min=1e-6), out["acc"], split.near, split.far)
                image = panel(gt, out["rgb"], depth)
                save_png(self.run_dir / "val" / f"step_{self.step:08d}.png", image)
                self.logger.log_image("val/panel", image, self.step)
        return float(np.mean(scores))

    def state_dict(self) -> dict:
        return {"step": self.step, "train_time": self.train_time, "pipeline": self.pipeline.state_dict(),
                "optimizer": self.optimizer.state_dict(), "batcher": self.batcher.state_dict(),
                "bg_generator": self.bg_generator.get_state(), "rng": rng_state(),
                "config": OmegaConf.to_container(self.cfg, resolve=True)}

    def save(self) -> Path:
        return save_checkpoint(self.state_dict(), self.run_dir / "checkpoints", self.step, self.cfg.trainer.ckpt_keep)

    def log(self, metrics: dict) -> None:
        self.metrics.log(metrics, self.step)
        self.logger.log(metrics, self.step)

    # -- the loop -----------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        tcfg = self.cfg.trainer
        max_time = tcfg.max_time_s or math.inf
        # a time-limited run shows progress in seconds of training, a step-limited one in steps
        timed = bool(tcfg.max_time_s)
        bar = tqdm(total=round(tcfg.max_time_s) if timed else tcfg.max_steps, unit="s" if timed else "step",
                   desc="train", dynamic_ncols=True, mininterval=1.0)
        window_rays, window_time, loss_psnr = 0, 0.0, (float("nan"), float("nan"))
        while self.step < tcfg.max_steps and self.train_time < max_time:
            t0 = time.perf_counter()
            loss_psnr = self.train_step()
            dt = time.perf_counter() - t0
            self.train_time += dt
            window_rays += tcfg.batch_rays
            window_time += dt
            bar.update(dt if timed else 1)
            if not math.isfinite(loss_psnr[0]):
                raise FloatingPointError(f"non-finite loss at step {self.step}; lower optim.lr")
            if self.step % tcfg.log_every == 0:
                rays_s = window_rays / max(window_time, 1e-9)
                window_rays, window_time = 0, 0.0
                self.log({"loss": loss_psnr[0], "train_psnr": loss_psnr[1], "lr": self.optimizer.param_groups[0]["lr"],
                          "rays_per_s": rays_s, "time_s": self.train_time})
                bar.set_postfix(step=self.step, loss=f"{loss_psnr[0]:.4f}", psnr=f"{loss_psnr[1]:.2f}",
                                rays_s=f"{rays_s:.0f}")
            if tcfg.val_every and self.step % tcfg.val_every == 0:
                val = self.validate()
                self.log({"val_psnr": val, "time_s": self.train_time})
                bar.write(f"step {self.step}: val PSNR {val:.2f} dB ({self.train_time:.0f} s of training)")
            if tcfg.ckpt_every and self.step % tcfg.ckpt_every == 0:
                self.save()
        bar.close()
        self.save()
        summary = {"steps": self.step, "train_time_s": self.train_time,
                   "rays_per_s": self.step * tcfg.batch_rays / max(self.train_time, 1e-9)}
        if tcfg.eval_at_end:
            test = evaluate_split(self.pipeline, self.dataset.load(self.cfg.eval.split),
                                  self.cfg.dataset.background, self.run_dir / "eval", self.cfg.eval.chunk,
                                  self.device, self.cfg.eval.max_views)
            summary.update(test_psnr=test["psnr"], test_ssim=test["ssim"], test_lpips=test["lpips"])
            self.log({"test_psnr": test["psnr"], "test_ssim": test["ssim"], "time_s": self.train_time})
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        self.metrics.close()
        self.logger.finish()
        return summary


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Entry point of ``train.py``: write the resolved config and provenance into ``run_dir``, train, evaluate."""
    keep_freed_memory()
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    trainer = Trainer(cfg, run_dir)
    (run_dir / "provenance.json").write_text(json.dumps(provenance(str(trainer.device)), indent=2))
    log.info("run dir %s; %d training views of %dx%d on %s; %d parameters", run_dir, len(trainer.train_split),
             trainer.train_split.width, trainer.train_split.height, trainer.device,
             sum(p.numel() for p in trainer.pipeline.parameters()))
    summary = trainer.fit()
    if "test_psnr" in summary:
        log.info("final test PSNR %.2f dB (SSIM %.4f) after %d steps, %.0f s of training, %.0f rays/s",
                 summary["test_psnr"], summary["test_ssim"], summary["steps"], summary["train_time_s"],
                 summary["rays_per_s"])
        print(f"test PSNR: {summary['test_psnr']:.2f} dB")
    return summary
