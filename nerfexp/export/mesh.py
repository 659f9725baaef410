"""Mesh export: density on a grid in the scene bounds -> marching cubes (PyMCubes) -> PLY with vertex colours.

    python evaluate.py run=<run dir> mesh=true [metrics=false mesh_resolution=256 mesh_threshold=25|auto]

For DTU the mesh is extracted in the normalised unit-sphere frame and mapped back to world coordinates with the
dataset's ``scale_mat``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nerfexp.cameras import Intrinsics
from nerfexp.config import ConfigError
from nerfexp.export.mesh_render import render_mesh_view
from nerfexp.pipelines.base import Pipeline


@torch.inference_mode()
def density_grid(pipeline: Pipeline, lo: np.ndarray, hi: np.ndarray, resolution: int, device: torch.device,
                 chunk: int = 65536) -> np.ndarray:
    """The pipeline's density (fine field, coarse when there is none; ``-sdf`` for SDF pipelines) at
    ``resolution^3`` points spanning [lo, hi]."""
    density = pipeline.mesh_density_fn()
    axes = [torch.linspace(float(lo[k]), float(hi[k]), resolution) for k in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    out = torch.empty(pts.shape[0])
    for s in range(0, pts.shape[0], chunk):
        out[s:s + chunk] = density(pts[s:s + chunk].to(device)).float().cpu()
    return out.reshape(resolution, resolution, resolution).numpy()


@torch.no_grad()  # not inference_mode: analytic SDF normals need autograd
def vertex_colors(pipeline: Pipeline, vertices: np.ndarray, normals: np.ndarray, device: torch.device,
                  chunk: int = 65536) -> np.ndarray:
    """Colour at each vertex seen head-on (view direction against the outward normal), ``(V, 3)`` in [0, 1]."""
    cols = []
    for s in range(0, len(vertices), chunk):
        x = torch.from_numpy(vertices[s:s + chunk]).float().to(device)
        d = -torch.from_numpy(normals[s:s + chunk]).float().to(device)
        cols.append(pipeline.point_colors(x, d).float().cpu().numpy())
    return np.concatenate(cols) if cols else np.zeros((0, 3))


def marching_cubes(grid: np.ndarray, threshold: float, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Iso-surface of ``grid`` at ``threshold`` in world units: vertices ``(V, 3)``, faces ``(F, 3)``."""
    import mcubes

    verts, faces = mcubes.marching_cubes(grid, threshold)
    scale = (hi - lo) / (np.array(grid.shape) - 1)
    return verts * scale + lo, faces.astype(np.int64)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, unit length, ``(V, 3)``."""
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    return normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None,
              normals: np.ndarray | None = None) -> Path:
    """Binary PLY through plyfile: float vertices, optional normals and uint8 colours, int faces."""
    from plyfile import PlyData, PlyElement

    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if normals is not None:
        fields += [("nx", "f4"), ("ny", "f4"), ("nz", "f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    v = np.empty(len(vertices), dtype=fields)
    v["x"], v["y"], v["z"] = vertices.T
    if normals is not None:
        v["nx"], v["ny"], v["nz"] = normals.T
    if colors is not None:
        c = (np.clip(colors, 0, 1) * 255 + 0.5).astype(np.uint8)
        v["red"], v["green"], v["blue"] = c.T
    f = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
    f["vertex_indices"] = faces
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")]).write(str(path))
    return path


def extract_mesh(pipeline: Pipeline, out_path: Path, bounds: tuple[np.ndarray, np.ndarray], resolution: int,
                 threshold: float | str | None, device: torch.device, to_world: np.ndarray | None = None,
                 views: list[tuple[str, np.ndarray, Intrinsics]] = ()) -> dict:
    """Marching cubes of the density at ``threshold`` (``"auto"``: halfway between the grid's min and max;
    None: the pipeline's ``mesh_level``, 25 for densities and 0, the zero level set, for SDFs) inside
    ``bounds``; writes a coloured PLY.

    ``to_world``: optional 4x4 similarity applied to the vertices last (DTU's ``scale_mat``).
    ``views``: ``(name, c2w, intrinsics)`` cameras of the scene frame; a shaded render of the mesh from each is
    written to ``<out_path folder>/mesh_views/<name>.png``.
    Returns ``{"path", "n_vertices", "n_faces", "views"}``."""
    lo, hi = (np.asarray(b, dtype=np.float64) for b in bounds)
    grid = density_grid(pipeline, lo, hi, resolution, device)
    if threshold is None:
        threshold = pipeline.mesh_level
    if threshold == "auto":
        threshold = 0.5 * float(grid.min() + grid.max())
    threshold = float(threshold)
    if not (grid.min() < threshold < grid.max()):
        raise ConfigError(f"mesh_threshold={threshold} is outside the density range [{grid.min():.3g}, "
                         f"{grid.max():.3g}] in the bounds {lo.tolist()}..{hi.tolist()}: no surface there")
    verts, faces = marching_cubes(grid, threshold, lo, hi)
    normals = -vertex_normals(verts, faces)  # density grows inwards: flip to outward normals
    if np.mean(np.sum(normals * (verts - verts.mean(0)), -1)) < 0:  # winding differs between versions
        normals = -normals
    colors = vertex_colors(pipeline, verts, normals, device)
    view_paths = [str(render_mesh_view(verts, faces, c2w, intr, out_path.parent / "mesh_views" / f"{name}.png"))
                  for name, c2w, intr in views]
    if to_world is not None:
        verts = verts @ to_world[:3, :3].T + to_world[:3, 3]
        normals = normals @ to_world[:3, :3].T
        normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    write_ply(out_path, verts, faces, colors, normals)
    return {"path": str(out_path), "n_vertices": int(len(verts)), "n_faces": int(len(faces)), "views": view_paths}


def mesh_bounds(bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Corners of the box meshed: ``[-bound, bound]^3`` (``dataset.bound``, the scene's extent)."""
    return np.full(3, -float(bound)), np.full(3, float(bound))
