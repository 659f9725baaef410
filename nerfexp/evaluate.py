"""Evaluation: render a split of a trained run and write metrics, predictions and comparison images."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from nerfexp.allocator import keep_freed_memory
from nerfexp.checkpoint import latest_checkpoint, load_checkpoint
from nerfexp.data.scene import SceneSplit, eval_background
from nerfexp.metrics import LPIPS, psnr, ssim
from nerfexp.pipeline import NeRFPipeline, build_pipeline
from nerfexp.seeding import resolve_device
from nerfexp.visualize import colorize_depth, panel, save_png

log = logging.getLogger(__name__)


def render_image(pipeline: NeRFPipeline, split: SceneSplit, index: int, background: torch.Tensor, chunk: int,
                 device: torch.device) -> dict[str, torch.Tensor]:
    """Render view ``index`` of ``split``: ``rgb (H, W, 3)``, ``depth``, ``disp``, ``acc`` ``(H, W)`` on CPU.

    Out of device memory, the view is rendered again with half the chunk, down to 64 rays, instead of failing."""
    rays = split.rays(index).to(device)
    while True:
        try:
            out = pipeline.render_rays_chunked(rays, background.to(device), chunk)
            break
        except torch.OutOfMemoryError:
            if chunk <= 64:
                raise
            chunk //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()
            log.warning("out of memory while rendering; retrying with eval.chunk=%d", chunk)
    h, w = split.height, split.width
    return {k: v.reshape(h, w, -1).squeeze(-1).cpu() if k != "rgb" else v.reshape(h, w, 3).cpu()
            for k, v in out.items()}


def evaluate_split(pipeline: NeRFPipeline, split: SceneSplit, background_mode: str, out_dir: Path, chunk: int,
                   device: torch.device, max_views: int | None = None, lpips: LPIPS | None = None) -> dict:
    """Render every view of ``split`` and write ``out_dir/metrics.json``, ``pred/<name>.png`` and
    ``compare/<name>.png`` (ground truth | prediction | depth). Returns the metrics dict."""
    pipeline.eval()
    background = eval_background(background_mode)
    lpips = lpips if lpips is not None else LPIPS()
    if not lpips.available:
        log.warning("LPIPS unavailable (%s); reported as null", lpips.reason)
    n = len(split) if max_views is None else min(max_views, len(split))
    per_view = []
    for k in tqdm(range(n), desc=f"evaluate {out_dir.name}", leave=False):
        out = render_image(pipeline, split, k, background, chunk, device)
        gt = split.composited(k, background)
        name = split.names[k] if split.names else f"{k:04d}"
        per_view.append({"frame": name, "psnr": psnr(out["rgb"], gt), "ssim": ssim(out["rgb"], gt),
                         "lpips": lpips(out["rgb"], gt)})
        save_png(out_dir / "pred" / f"{name}.png", out["rgb"])
        depth = colorize_depth(out["depth"] / out["acc"].clamp(min=1e-6), out["acc"], split.near, split.far)
        save_png(out_dir / "compare" / f"{name}.png", panel(gt, out["rgb"], depth))

    def mean(key: str) -> float | None:
        vals = [v[key] for v in per_view if v[key] is not None]
        return sum(vals) / len(vals) if vals and len(vals) == len(per_view) else None

    metrics = {"psnr": mean("psnr"), "ssim": mean("ssim"), "lpips": mean("lpips"), "n_views": n,
               "lpips_unavailable_reason": None if lpips.available else lpips.reason, "per_view": per_view}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def load_run_config(run_dir: Path) -> DictConfig:
    """The resolved config a training run saved (``<run_dir>/config.yaml``)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"run={run_dir}: no config.yaml there; is it a nerfexp training run directory?")
    return OmegaConf.load(path)


def evaluate_run(cfg: DictConfig) -> dict:
    """Entry point of ``evaluate.py``: load ``cfg.run``'s config and last checkpoint, evaluate ``cfg.split``."""
    keep_freed_memory()
    run_dir = Path(cfg.run).expanduser().resolve()
    run_cfg = load_run_config(run_dir)
    overrides = {k: v for k, v in OmegaConf.to_container(cfg.dataset).items() if v is not None}
    run_cfg.dataset = OmegaConf.merge(run_cfg.dataset, overrides)
    ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint else latest_checkpoint(run_dir / "checkpoints")
    if ckpt_path is None:
        raise FileNotFoundError(f"run={run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    device = resolve_device(cfg.device)
    pipeline = build_pipeline(run_cfg).to(device)
    pipeline.load_state_dict(load_checkpoint(ckpt_path, device)["pipeline"])
    dataset = instantiate(run_cfg.dataset)
    split = dataset.load(cfg.split)
    out_dir = run_dir / (cfg.out_subdir or "eval")
    metrics = evaluate_split(pipeline, split, run_cfg.dataset.background, out_dir, cfg.chunk, device,
                             cfg.max_views)
    log.info("%s: %s split, %d views: PSNR %.2f dB, SSIM %.4f, LPIPS %s (checkpoint %s)", run_dir, cfg.split,
             metrics["n_views"], metrics["psnr"], metrics["ssim"], metrics["lpips"], ckpt_path.name)
    return metrics
