"""Evaluation: render a split of a trained run and write metrics, predictions and comparison images."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import imageio.v3 as iio
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nerfexp.checkpoint import latest_checkpoint, load_checkpoint
from nerfexp.compat import upgrade_run_config
from nerfexp.data.scene import SceneSplit, eval_background
from nerfexp.kernels import prepare_cpu_kernels
from nerfexp.metrics import LPIPS, mask_iou, psnr, ssim
from nerfexp.pipelines.base import Pipeline
from nerfexp.pipelines.build import build_pipeline
from nerfexp.pipelines.render_view import render_sharded, render_views
from nerfexp.runtime.allocator import keep_freed_memory
from nerfexp.runtime.amp import amp_dtype
from nerfexp.runtime.distributed import (SINGLE, World, close_world, device_for, gather_objects, init_world,
                                         merge_shards)
from nerfexp.runtime.seeding import resolve_device
from nerfexp.viz.images import contact_sheet, depth_image, error_map, normal_image, panel, save_png

log = logging.getLogger(__name__)


def evaluate_split(pipeline: Pipeline, split: SceneSplit, background_mode: str, out_dir: Path, chunk: int,
                   device: torch.device, max_views: int | None = None, lpips: LPIPS | None = None,
                   world: World = SINGLE) -> dict | None:
    """Render every view of ``split`` and write ``out_dir/metrics.json``, ``pred/<name>.png`` and
    ``compare/<name>.png`` (ground truth | prediction | depth | error, and normals for SDF pipelines, also as
    ``normals/<name>.png``). Returns the metrics dict. In a data-parallel run every rank renders its share of
    the views; rank 0 scores and writes them all (the other ranks return None)."""
    pipeline.eval()
    background = eval_background(background_mode)
    n = len(split) if max_views is None else min(max_views, len(split))
    outs, work = render_sharded(pipeline, split, n, background, chunk, device, world, f"evaluate {out_dir.name}")
    if outs is None:
        return None
    lpips = lpips if lpips is not None else LPIPS()
    if not lpips.available:
        log.warning("LPIPS unavailable (%s); reported as null", lpips.reason)
    has_masks = bool((split.alphas < 0.5).any())  # object masks (blender alpha, dtu masks), not all-opaque photos
    per_view, tiles = [], []
    for k, out in enumerate(outs):
        gt = split.composited(k, background)
        name = split.names[k] if split.names else f"{k:04d}"
        per_view.append({"frame": name, "psnr": psnr(out["rgb"], gt), "ssim": ssim(out["rgb"], gt),
                         "lpips": lpips(out["rgb"], gt)})
        if has_masks:
            per_view[-1]["mask_iou"] = mask_iou(out["acc"], split.alphas[k, ..., 0])
        save_png(out_dir / "pred" / f"{name}.png", out["rgb"])
        depth = depth_image(out, split.near, split.far)
        tiles_row = [gt, out["rgb"], depth, error_map(out["rgb"], gt)]
        if "normal" in out:  # SDF pipelines: a normal map per view
            normals = normal_image(out["normal"], out["acc"], split.c2w[k])
            save_png(out_dir / "normals" / f"{name}.png", normals)
            tiles_row.append(normals)
        save_png(out_dir / "compare" / f"{name}.png", panel(*tiles_row))
        tiles.append(out["rgb"])

    def mean(key: str) -> float | None:
        vals = [v[key] for v in per_view if v[key] is not None]
        return sum(vals) / len(vals) if vals and len(vals) == len(per_view) else None

    metrics = {"psnr": mean("psnr"), "ssim": mean("ssim"), "lpips": mean("lpips"), "n_views": n,
               "mask_iou": mean("mask_iou") if has_masks else None,
               "lpips_unavailable_reason": None if lpips.available else lpips.reason,
               "render": {**render_throughput(work["rays"], work["points"], work["seconds"], n),
                          "ranks": world.size},
               "per_view": per_view}
    log.info("rendered %d %s views in %.1f s: %.2f s per view, %s rays/s, %.1f samples per ray", n, out_dir.name,
             work["seconds"], metrics["render"]["s_per_view"], f"{metrics['render']['rays_per_s']:,.0f}",
             metrics["render"]["samples_per_ray"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if tiles:
        labels = [f"{v['frame']} {v['psnr']:.2f} dB" for v in per_view]
        iio.imwrite(out_dir / "contact_sheet.png", contact_sheet(tiles, labels, columns=min(5, len(tiles))))
    return metrics


def render_throughput(rays: int, points: int, seconds: float, views: int) -> dict[str, float]:
    """Rendering speed: rays and field queries per second, samples per ray, seconds per view."""
    seconds = max(seconds, 1e-9)
    return {"rays_per_s": rays / seconds, "points_per_s": points / seconds,
            "samples_per_ray": points / max(rays, 1), "s_per_view": seconds / max(views, 1)}


def validation_views(pipeline: Pipeline, split: SceneSplit, background: torch.Tensor, chunk: int,
                     device: torch.device, n_views: int, world: World = SINGLE) -> tuple[float, torch.Tensor | None]:
    """Mean PSNR over the first ``n_views`` views of ``split`` (validation during training), the same on every
    rank, and on rank 0 the panel (ground truth | prediction | depth) of the first view, ``(H, 3W, 3)``."""
    n = min(n_views, len(split))
    mine, _ = render_views(pipeline, split, world.shard(n), background, chunk, device, progress=False)
    scores = [(k, psnr(out["rgb"], split.composited(k, background))) for k, out in mine]
    image = None
    if mine and mine[0][0] == 0:
        out = mine[0][1]
        image = panel(split.composited(0, background), out["rgb"], depth_image(out, split.near, split.far))
    all_scores = merge_shards(gather_objects(scores, world))
    return float(sum(all_scores) / max(len(all_scores), 1)), image


def load_run_config(run_dir: Path) -> DictConfig:
    """The resolved config a training run saved (``<run_dir>/config.yaml``), in today's names (older runs too)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"run={run_dir}: no config.yaml there; is it a nerfexp training run directory?")
    return upgrade_run_config(OmegaConf.load(path))


def restore_run(cfg: DictConfig, world: World = SINGLE) -> tuple[Path, DictConfig, Pipeline, object, torch.device,
                                                                  dict]:
    """Load ``cfg.run``'s config (with ``cfg.dataset`` overrides), dataset and checkpointed pipeline."""
    run_dir = Path(cfg.run).expanduser().resolve()
    run_cfg = load_run_config(run_dir)
    overrides = {k: v for k, v in OmegaConf.to_container(cfg.dataset).items() if v is not None}
    run_cfg.dataset = OmegaConf.merge(run_cfg.dataset, overrides)
    ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint else latest_checkpoint(run_dir / "checkpoints")
    if ckpt_path is None:
        raise FileNotFoundError(f"run={run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    device = device_for(world, resolve_device(cfg.device))
    pipeline = build_pipeline(run_cfg).to(device)
    prepare_cpu_kernels(pipeline, device)
    pipeline.amp_dtype = amp_dtype(run_cfg.trainer.get("amp", "auto"), device)
    checkpoint = load_checkpoint(ckpt_path, device)
    pipeline.load_state_dict(checkpoint["pipeline"])
    pipeline.eval()
    log.info("%s: checkpoint %s (step %d)", run_dir, ckpt_path.name, checkpoint["step"])
    return run_dir, run_cfg, pipeline, instantiate(run_cfg.dataset), device, checkpoint


def run_logger(run_dir: Path, run_cfg: DictConfig, checkpoint: dict):
    """The run's own logger, continuing its W&B run where it has one, so evaluation outputs land beside training."""
    if not str(run_cfg.logger.get("_target_", "")).endswith("WandbLogger"):
        return None
    run_id = checkpoint.get("logger_run_id")
    return instantiate(run_cfg.logger, run_dir=run_dir, run_config=OmegaConf.to_container(run_cfg),
                       **({"run_id": run_id} if run_id else {}), _recursive_=False)


def evaluate_run(cfg: DictConfig) -> dict:
    """Entry point of ``evaluate.py``: metrics, images, video and mesh of a run, or a comparison of runs."""
    keep_freed_memory()
    if cfg.compare:
        from nerfexp.studies.compare import compare_runs

        out_dir = Path(cfg.run).expanduser() / cfg.out_subdir / "compare" if cfg.run else Path("outputs/compare")
        return compare_runs([Path(p) for p in cfg.compare], out_dir)
    if not cfg.run:
        raise FileNotFoundError("give run=<training run dir> (or compare=[<dir>,<dir>])")
    world = init_world(resolve_device(cfg.device))
    try:
        return evaluate_in_world(cfg, world)
    finally:
        close_world(world)


def evaluate_in_world(cfg: DictConfig, world: World) -> dict:
    """:func:`evaluate_run` of one rank: under ``torchrun`` each renders its share of the views and video frames,
    rank 0 gathers, scores and writes them (and extracts the mesh); the other ranks return ``{}``."""
    run_dir, run_cfg, pipeline, dataset, device, checkpoint = restore_run(cfg, world)
    out_dir = run_dir / cfg.out_subdir
    logger = run_logger(run_dir, run_cfg, checkpoint) if world.is_main else None
    result: dict = {}
    split = dataset.load(cfg.split)
    chunk = int(cfg.chunk or OmegaConf.select(run_cfg, "eval.chunk", default=8192))
    if cfg.metrics:
        metrics = evaluate_split(pipeline, split, run_cfg.dataset.background, out_dir, chunk, device,
                                 cfg.max_views, world=world)
    if cfg.metrics and world.is_main:
        log.info("%s split, %d views: PSNR %.2f dB, SSIM %.4f, LPIPS %s", cfg.split, metrics["n_views"],
                 metrics["psnr"], metrics["ssim"], metrics["lpips"])
        result.update(metrics)
        if logger is not None:
            logger.log({f"eval/{k}": metrics[k] for k in ("psnr", "ssim") if metrics[k] is not None}, checkpoint["step"])
            logger.log_table("eval/per_view", ["frame", "psnr", "ssim", "lpips"],
                             [[v["frame"], v["psnr"], v["ssim"], v["lpips"]] for v in metrics["per_view"]])
            logger.log_image("eval/contact_sheet", iio.imread(out_dir / "contact_sheet.png") / 255.0,
                             checkpoint["step"])
    if cfg.video:
        from nerfexp.export.video import render_path_frames, write_video

        if not hasattr(dataset, "render_path"):
            raise FileNotFoundError(f"dataset {type(dataset).__name__} has no render path for video=true")
        poses = dataset.render_path(cfg.video_frames)
        frames = render_path_frames(pipeline, split, poses, eval_background(run_cfg.dataset.background), chunk,
                                    device, cfg.video_scale, world)
    if cfg.video and world.is_main:
        paths = write_video(frames, out_dir / "video", fps=cfg.video_fps)
        result["video"] = [str(p) for p in paths]
        log.info("video: %s (%d frames)", paths[0], len(frames))
        if logger is not None:
            logger.log_video("eval/render_path", paths[0], cfg.video_fps)
    if cfg.mesh and world.is_main:
        from nerfexp.export.mesh import extract_mesh, mesh_bounds

        to_world = getattr(dataset, "to_world", None)
        views = [(split.names[k], split.c2w[k].double().numpy(), split.intrinsics)
                 for k in range(min(cfg.mesh_views, len(split)))]
        result["mesh"] = extract_mesh(pipeline, out_dir / "mesh.ply", mesh_bounds(run_cfg.dataset.bound),
                                      cfg.mesh_resolution, cfg.mesh_threshold, device, to_world, views)
        log.info("mesh: %s (%d vertices)", result["mesh"]["path"], result["mesh"]["n_vertices"])
        if logger is not None:
            logger.log_mesh("eval/mesh", out_dir / "mesh.ply")
    if logger is not None:
        logger.finish()
    return result
