"""Videos along a dataset's render path (orbit for blender/demo/dtu, spiral for llff): colour | depth, MP4 + GIF."""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import torch

from nerfexp.data.scene import SceneSplit
from nerfexp.pipelines.base import Pipeline
from nerfexp.pipelines.render_view import render_sharded
from nerfexp.runtime.distributed import SINGLE, World
from nerfexp.viz.images import depth_image, panel, to_uint8


def render_path_frames(pipeline: Pipeline, template: SceneSplit, poses: torch.Tensor, background: torch.Tensor,
                       chunk: int, device: torch.device, scale: float = 1.0, world: World = SINGLE) \
        -> list[np.ndarray] | None:
    """Render ``poses`` ``(N, 4, 4)`` with ``template``'s camera model; frames are uint8 colour | depth panels.
    In a data-parallel run each rank renders its share; rank 0 gets every frame, the others None."""
    path = template.with_poses(poses, scale)
    outs, _ = render_sharded(pipeline, path, len(path), background, chunk, device, world, "video")
    if outs is None:
        return None
    return [to_uint8(panel(out["rgb"], depth_image(out, path.near, path.far))) for out in outs]


def write_video(frames: list[np.ndarray], out_dir: Path, name: str = "render_path", fps: int = 24) -> list[Path]:
    """Write ``frames`` as ``<name>.mp4`` (H.264 through imageio's ffmpeg) and ``<name>.gif``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mp4, gif = out_dir / f"{name}.mp4", out_dir / f"{name}.gif"
    # H.264 wants even sizes: pad by one pixel where needed rather than resample
    h, w = frames[0].shape[:2]
    padded = [np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") for f in frames]
    iio2.mimwrite(mp4, padded, fps=fps, macro_block_size=1, quality=8)
    iio.imwrite(gif, np.stack(frames), duration=1000.0 / fps, loop=0)
    return [mp4, gif]
