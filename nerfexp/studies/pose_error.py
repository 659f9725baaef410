"""How far solved camera poses are from known ones: camera centres compared after the similarity transform
(scale, rotation, translation) that best aligns them, since structure from motion fixes neither scale nor frame."""
from __future__ import annotations

import numpy as np


def similarity_align(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``s, R, t`` minimising ``sum |s R src_i + t - dst_i|^2`` for points ``(N, 3)`` (Umeyama's closed form)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection is not a camera motion
        d[2, 2] = -1.0
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sigma) @ d) / a.var(0).sum())
    return scale, rot, mu_d - scale * rot @ mu_s


def centre_errors(solved: np.ndarray, known: np.ndarray) -> dict[str, float]:
    """Distances between aligned ``solved`` and ``known`` camera centres ``(N, 3)``, as fractions of the known
    cameras' spread (the largest distance between two of them): ``median``, ``max``, and the ``spread``."""
    s, rot, t = similarity_align(solved, known)
    errors = np.linalg.norm(solved @ rot.T * s + t - known, axis=1)
    spread = float(np.linalg.norm(known[:, None] - known[None], axis=-1).max())
    return {"median": float(np.median(errors)) / spread, "max": float(errors.max()) / spread, "spread": spread}
