"""Rendering whole views of a split with a pipeline: in chunks of rays with an out-of-memory fallback, and a
split's views shared out over the ranks of a data-parallel run."""
from __future__ import annotations

import logging
import time

import torch
from tqdm import tqdm

from nerfexp.data.scene import SceneSplit
from nerfexp.pipelines.base import Pipeline
from nerfexp.runtime.distributed import SINGLE, World, gather_to_main, merge_shards

log = logging.getLogger(__name__)


def render_image(pipeline: Pipeline, split: SceneSplit, index: int, background: torch.Tensor, chunk: int,
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


def render_views(pipeline: Pipeline, split: SceneSplit, indices: list[int], background: torch.Tensor, chunk: int,
                 device: torch.device, desc: str = "render", progress: bool = True) \
        -> tuple[list[tuple[int, dict[str, torch.Tensor]]], dict[str, float]]:
    """Render views ``indices`` of ``split``: ``(index, outputs on CPU)`` pairs and this process's work
    (``rays``, ``points``, ``seconds``)."""
    rendered = []
    render_s, rays0, points0 = 0.0, pipeline.rays_rendered, int(pipeline.points_queried)
    for k in tqdm(indices, desc=desc, leave=False, disable=not progress):
        t0 = time.perf_counter()
        rendered.append((k, render_image(pipeline, split, k, background, chunk, device)))
        render_s += time.perf_counter() - t0
    return rendered, {"rays": pipeline.rays_rendered - rays0, "points": int(pipeline.points_queried) - points0,
                      "seconds": render_s}


def render_sharded(pipeline: Pipeline, split: SceneSplit, n: int, background: torch.Tensor, chunk: int,
                   device: torch.device, world: World = SINGLE, desc: str = "render") \
        -> tuple[list[dict[str, torch.Tensor]] | None, dict[str, float]]:
    """The first ``n`` views of ``split``, each rank rendering every ``world.size``-th: on rank 0 all views in
    order and the work of all ranks (seconds: the slowest rank's); elsewhere ``None``."""
    mine, work = render_views(pipeline, split, world.shard(n), background, chunk, device, desc, world.is_main)
    shards = gather_to_main((mine, work), world)
    if shards is None:
        return None, work
    total = {"rays": sum(w["rays"] for _, w in shards), "points": sum(w["points"] for _, w in shards),
             "seconds": max(w["seconds"] for _, w in shards)}
    return merge_shards(views for views, _ in shards), total
