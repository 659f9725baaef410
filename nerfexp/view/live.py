"""The viewer inside a training run (``trainer.viewer=true``): between optimisation steps, renders for browsers
within ``viewer.max_share`` of the wall time, shows the run's progress, and holds training while paused."""
from __future__ import annotations

import time

import torch
from omegaconf import DictConfig

from nerfexp.data.scene import SceneSplit
from nerfexp.pipelines.base import Pipeline
from nerfexp.view.server import Viewer

STATS_EVERY_S = 0.5
MAX_CREDIT_S = 0.5  # render time saved up while no browser needed any: a burst, never a long stall


class LiveViewer:
    """Token bucket over wall time: rendering earns ``max_share`` seconds per second of wall time (at most
    :data:`MAX_CREDIT_S` saved up) and spends them; with no browser connected :meth:`after_step` returns at once."""

    def __init__(self, cfg: DictConfig, pipeline: Pipeline, split: SceneSplit, background: torch.Tensor,
                 device: torch.device, render_path: torch.Tensor | None, box: float | None, title: str):
        self.viewer = Viewer(cfg, pipeline, split, background, device, render_path, box, title, training=True)
        self.share = float(cfg.max_share)
        self.credit = 0.0
        self.last = time.monotonic()
        self.last_stats = 0.0
        self.rays_per_s = 0.0

    @property
    def render_seconds(self) -> float:
        return self.viewer.render_seconds

    def after_step(self, pipeline: Pipeline, step: int, loss: float, psnr: float, rays: int, step_s: float,
                   stop) -> None:
        """Called after each step (``rays`` trained in ``step_s`` seconds) with the pipeline being trained (a
        restart builds a new one); ``stop()`` says training must end (a signal), which also ends a pause."""
        self.viewer.pipeline = pipeline
        now = time.monotonic()
        self.credit = min(self.credit + (now - self.last) * self.share, MAX_CREDIT_S)
        self.last = now
        viewer = self.viewer
        if not viewer.connected:
            return
        viewer.model_changed()
        self.rays_per_s = 0.9 * self.rays_per_s + 0.1 * rays / max(step_s, 1e-9) if self.rays_per_s else \
            rays / max(step_s, 1e-9)
        if now - self.last_stats > STATS_EVERY_S:
            self.last_stats = now
            viewer.set_stats(f"step **{step}**  \nloss {loss:.4f}  \nPSNR {psnr:.2f} dB  \n"
                             f"{self.rays_per_s:,.0f} rays/s" + ("  \n**paused**" if viewer.paused else ""))
        if self.credit > 0 and viewer.has_work():
            with torch.no_grad():
                self.credit -= viewer.work(self.credit)
        if viewer.paused:
            viewer.set_stats(f"step **{step}**: **paused**")
            with torch.no_grad():
                while viewer.paused and not stop():
                    if not (viewer.has_work() and viewer.work(0.1)):
                        time.sleep(0.02)
            self.last = time.monotonic()  # a pause earns no render time

    def close(self) -> None:
        self.viewer.close()
