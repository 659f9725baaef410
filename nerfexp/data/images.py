"""Image files for every dataset loader: listing, size checks, threaded decoding, premultiplying and area-downscaling.

8-bit images are premultiplied and block-summed in integer arithmetic (exact, and about twice as fast as converting
full-resolution frames to float32 first); other bit depths go through float32. Decoding runs in a thread pool:
Pillow releases the GIL while inflating PNGs, so the loaders scale with the cores there are.
"""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file."""


def require_root(root: Path, example: str) -> None:
    """Stop with one line when the dataset folder ``root`` is missing: where it was looked for and how to point
    ``dataset.root`` elsewhere (``example``: the scene's folder name in its published layout)."""
    if root.is_dir():
        return
    where = "" if root.is_absolute() else f" (looked under {Path.cwd()})"
    raise DatasetError(f"dataset.root={root}: folder does not exist{where}; put the scene there (data/{example} "
                       f"is the original NeRF code's layout) or set dataset.root=<path to {example}>")


def list_images(folder: Path) -> list[Path]:
    """Image files (PNG/JPEG, any case) in ``folder``, sorted by name; hidden files are skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def source_names(paths: list[Path], root: Path) -> list[str]:
    """Each file's path relative to the dataset ``root`` (POSIX separators; as written when it lies outside):
    what identifies a frame across splits, whose file stems may repeat (blender's ``r_0`` in every split)."""
    root = root.resolve()
    names = []
    for path in paths:
        try:
            names.append(path.resolve().relative_to(root).as_posix())
        except ValueError:
            names.append(path.as_posix())
    return names


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file is missing") from None
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise DatasetError(f"{path}: cannot read image ({exc})") from None


def check_same_size(paths: list[Path], what: str = "image") -> tuple[int, int]:
    """Common ``(width, height)`` of ``paths`` (header reads only); an odd one out raises naming the file."""
    sizes = [image_size(p) for p in paths]
    return _common_size(paths, sizes, what)


def _common_size(paths: list[Path], sizes: list[tuple[int, int]], what: str) -> tuple[int, int]:
    if not sizes:
        raise DatasetError("no images to load")
    (w, h), count = Counter(sizes).most_common(1)[0]
    odd = [(p, s) for p, s in zip(paths, sizes) if s != (w, h)]
    if odd:
        p, (ow, oh) = odd[0]
        more = f" (and {len(odd) - 1} more)" if len(odd) > 1 else ""
        raise DatasetError(f"{p}: {what} is {ow}x{oh} pixels, expected {w}x{h} like the other {count} "
                           f"{what}s{more}")
    return w, h


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to ``(H, W, C)`` (C = 1..4), uint8 (or uint16 for 16-bit greyscale PNGs)."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "LA", "RGB", "RGBA", "I;16"):
                img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
            arr = np.asarray(img)  # Pillow releases the GIL while decoding: threads decode in parallel
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file is missing") from None
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise DatasetError(f"{path}: cannot read image ({exc})") from None
    return arr[..., None] if arr.ndim == 2 else arr


def block_sum(x: np.ndarray, factor: int) -> np.ndarray:
    """Sum an integer ``(H, W, C)`` array over ``factor`` x ``factor`` blocks (H, W cropped to multiples): uint32."""
    h, w, c = x.shape[0] // factor, x.shape[1] // factor, x.shape[2]
    x = np.ascontiguousarray(x[: h * factor, : w * factor])
    if factor == 1:
        return x.astype(np.uint32)
    rows = x.reshape(h, factor, w * factor * c).sum(axis=1, dtype=np.uint32)  # long contiguous runs first
    return rows.reshape(h, w, factor, c).sum(axis=2, dtype=np.uint32)


def _block_mean_float(x: np.ndarray, factor: int) -> np.ndarray:
    h, w = x.shape[0] // factor, x.shape[1] // factor
    x = x[: h * factor, : w * factor]
    return x.reshape(h, factor, w, factor, x.shape[-1]).mean(axis=(1, 3)) if factor > 1 else x


def premultiplied_frame(image: np.ndarray, mask: np.ndarray | None, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour premultiplied by alpha and area-averaged by ``factor``.

    Args:
        image: ``(H, W, C)`` decoded image: grey, grey+alpha, RGB or RGBA.
        mask: optional ``(H, W, C)`` image whose first channel replaces the image's alpha (DTU masks).
        factor: integer area-averaging factor.
    Returns:
        ``(h, w, 3)`` premultiplied colour and ``(h, w, 1)`` alpha, float32 in [0, 1]; alpha is 1 for images
        without an alpha channel and no mask.
    """
    c = image.shape[-1]
    rgb = np.repeat(image[..., :1], 3, axis=-1) if c < 3 else image[..., :3]
    alpha = mask[..., :1] if mask is not None else (image[..., -1:] if c in (2, 4) else None)
    if rgb.dtype == np.uint8 and (alpha is None or alpha.dtype == np.uint8):
        area = float(factor * factor)
        if alpha is None:
            color = block_sum(rgb, factor).astype(np.float32) / np.float32(255.0 * area)
            return color, np.ones((*color.shape[:2], 1), np.float32)
        # (a broadcast over a length-1 channel axis is several times slower in numpy than an explicit repeat)
        premult = rgb.astype(np.uint16) * np.repeat(alpha, 3, axis=-1)
        color = block_sum(premult, factor).astype(np.float32) / np.float32(255.0 * 255.0 * area)
        return color, block_sum(alpha, factor).astype(np.float32) / np.float32(255.0 * area)
    rgb_f = rgb.astype(np.float32) / np.float32(np.iinfo(rgb.dtype).max if rgb.dtype.kind in "ui" else 1.0)
    if alpha is None:
        alpha_f = np.ones((*rgb.shape[:2], 1), np.float32)
    else:
        alpha_f = alpha.astype(np.float32) / np.float32(np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1.0)
    return (_block_mean_float(rgb_f * alpha_f, factor).astype(np.float32),
            _block_mean_float(alpha_f, factor).astype(np.float32))


def load_frames(paths: list[Path], factor: int, mask_paths: list[Path] | None = None,
                workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Decode, premultiply and area-downscale frames in parallel.

    Args:
        paths: image files, all of one size.
        factor: integer area-averaging factor.
        mask_paths: optional masks (one per image, same size) used as alpha.
    Returns:
        ``(N, h, w, 3)`` premultiplied colour and ``(N, h, w, 1)`` alpha, float32.
    Raises:
        DatasetError naming the file that is missing, unreadable or of another size than the rest.
    """
    masks = mask_paths if mask_paths is not None else [None] * len(paths)

    def one(path: Path, mask_path: Path | None) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
        image = read_image(path)
        mask = None
        if mask_path is not None:
            mask = read_image(mask_path)
            if mask.shape[:2] != image.shape[:2]:
                raise DatasetError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} pixels, its image "
                                   f"{path} is {image.shape[1]}x{image.shape[0]}")
        size = (image.shape[1], image.shape[0])
        return (size, *premultiplied_frame(image, mask, factor))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, paths, masks))
    _common_size(paths, [r[0] for r in results], "image")
    return np.stack([r[1] for r in results]), np.stack([r[2] for r in results])
