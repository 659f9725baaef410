"""Images people look at: colour-mapped depth and side-by-side panels."""
from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor


def to_uint8(image: Tensor | np.ndarray) -> np.ndarray:
    """``(H, W, C)`` float in [0, 1] -> uint8."""
    arr = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def colorize_depth(depth: Tensor, acc: Tensor | None = None, near: float | None = None,
                   far: float | None = None) -> Tensor:
    """``(H, W)`` depth -> ``(H, W, 3)`` turbo colours (near = warm); empty pixels (acc < 0.5) are white."""
    import matplotlib

    d = depth.detach().float().cpu()
    mask = (acc.detach().cpu() > 0.5) if acc is not None else torch.ones_like(d, dtype=torch.bool)
    if near is None or far is None:
        vals = d[mask] if mask.any() else d.flatten()
        near, far = float(vals.min()), float(vals.max())
    x = ((d - near) / max(far - near, 1e-8)).clamp(0, 1)
    colors = torch.from_numpy(matplotlib.colormaps["turbo"](1.0 - x.numpy())[..., :3]).float()
    colors[~mask] = 1.0
    return colors


def depth_image(out: dict[str, Tensor], near: float, far: float) -> Tensor:
    """Colour-mapped expected depth of a rendered view (``out`` with ``depth`` and ``acc``, ``(H, W)`` each)."""
    return colorize_depth(out["depth"] / out["acc"].clamp(min=1e-6), out["acc"], near, far)


def normal_image(normal: Tensor, acc: Tensor, c2w: Tensor) -> Tensor:
    """``(H, W, 3)`` world-space normals -> colours of the camera-frame normal (x right, y up, z towards the
    camera) mapped from [-1, 1] to [0, 1]; empty pixels (acc < 0.5) are white."""
    n = normal.detach().float().cpu() / acc.detach().float().cpu().clamp(min=1e-6).unsqueeze(-1)
    n = torch.nn.functional.normalize(n @ c2w[:3, :3].detach().float().cpu(), dim=-1)  # R^T n, row-wise
    img = 0.5 * (n + 1.0)
    return torch.where((acc.detach().cpu() > 0.5).unsqueeze(-1), img, torch.ones_like(img))


def error_map(pred: Tensor, target: Tensor, vmax: float = 0.25) -> Tensor:
    """``(H, W, 3)`` heat map (inferno) of the per-pixel mean absolute error, saturating at ``vmax``."""
    import matplotlib

    err = (pred.detach().float().cpu() - target.float().cpu()).abs().mean(-1)
    x = (err / vmax).clamp(0, 1).numpy()
    return torch.from_numpy(matplotlib.colormaps["inferno"](x)[..., :3]).float()


def contact_sheet(tiles: list[Tensor], labels: list[str], columns: int = 5) -> np.ndarray:
    """A grid of ``(H, W, 3)`` images with a label written on each tile (uint8 ``(rows*H, columns*W, 3)``)."""
    from PIL import Image, ImageDraw

    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * w, rows * h), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (tile, label) in enumerate(zip(tiles, labels)):
        x, y = (k % columns) * w, (k // columns) * h
        sheet.paste(Image.fromarray(to_uint8(tile)), (x, y))
        box = draw.textbbox((x + 2, y + 2), label)
        draw.rectangle(box, fill="black")
        draw.text((x + 2, y + 2), label, fill="white")
    return np.asarray(sheet)


def save_png(path: Path, image: Tensor | np.ndarray) -> None:
    """Write an ``(H, W, 3)`` float image in [0, 1] as 8-bit PNG, creating folders as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, to_uint8(image))


def panel(*images: Tensor) -> Tensor:
    """Concatenate ``(H, W, 3)`` images left to right with a 2-pixel white gap."""
    gap = torch.ones(images[0].shape[0], 2, 3)
    parts = []
    for k, img in enumerate(images):
        if k:
            parts.append(gap)
        parts.append(img.detach().float().cpu().clamp(0, 1))
    return torch.cat(parts, dim=1)
