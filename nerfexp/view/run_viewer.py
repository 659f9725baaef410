"""Viewing a trained (or training) run from its directory: the newest checkpoint, reloaded when a newer one
appears."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from nerfexp.checkpoint import latest_checkpoint, load_checkpoint
from nerfexp.data.scene import eval_background
from nerfexp.evaluate import restore_run
from nerfexp.view.server import Viewer, check_port_free, scene_extras

log = logging.getLogger(__name__)
RELOAD_CHECK_S = 2.0  # how often the run's checkpoints folder is looked at


class RunViewer:
    """A :class:`Viewer` of the run ``cfg.run`` (``cfg`` is the view command's config)."""

    def __init__(self, cfg: DictConfig):
        check_port_free(cfg.viewer.host, cfg.port, "port")  # before the minute that loading may take
        self.run_dir, run_cfg, self.pipeline, dataset, self.device, checkpoint = restore_run(cfg)
        viewer_cfg = OmegaConf.merge(cfg.viewer, {"port": cfg.port})
        split = dataset.load("train")
        path, box = scene_extras(dataset, split, run_cfg.dataset)
        self.viewer = Viewer(viewer_cfg, self.pipeline, split, eval_background(run_cfg.dataset.background),
                             self.device, path, box, title=f"nerfexp: {self.run_dir.name}")
        self.ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint else latest_checkpoint(self.run_dir / "checkpoints")
        self.follow = not cfg.checkpoint  # an explicit checkpoint stays; otherwise the newest is shown
        self.step = int(checkpoint["step"])
        self.last_check = time.monotonic()
        self._show_step()

    def _show_step(self) -> None:
        self.viewer.set_stats(f"**{self.run_dir.name}**  \ncheckpoint step {self.step}")

    def reload_if_newer(self) -> bool:
        """Load the newest checkpoint when it is not the one shown; returns whether it did."""
        self.last_check = time.monotonic()
        newest = latest_checkpoint(self.run_dir / "checkpoints")
        if not self.follow or newest is None or newest == self.ckpt_path:
            return False
        try:
            checkpoint = load_checkpoint(newest, self.device)
        except (OSError, RuntimeError, EOFError) as exc:  # being written: the next look gets it
            log.debug("checkpoint %s not readable yet: %s", newest, exc)
            return False
        self.pipeline.load_state_dict(checkpoint["pipeline"])
        self.pipeline.eval()
        self.ckpt_path, self.step = newest, int(checkpoint["step"])
        self.viewer.model_changed()
        self._show_step()
        log.info("viewer: loaded %s (step %d)", newest.name, self.step)
        return True

    def poll(self) -> None:
        """One turn of the serving loop: render what browsers wait for, or rest a moment."""
        if time.monotonic() - self.last_check > RELOAD_CHECK_S:
            self.reload_if_newer()
        if self.viewer.has_work():
            self.viewer.work(0.1)
        else:
            self._show_step()
            time.sleep(0.02)

    def serve(self, duration_s: float | None = None) -> None:
        """Serve until Ctrl-C (or for ``duration_s`` seconds)."""
        end = time.monotonic() + duration_s if duration_s else float("inf")
        print(f"viewer: http://localhost:{self.viewer.port} (Ctrl-C to stop)", flush=True)
        try:
            with torch.no_grad():
                while time.monotonic() < end:
                    self.poll()
        except KeyboardInterrupt:
            pass
        finally:
            self.viewer.close()
