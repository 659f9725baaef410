"""Plot a dataset's cameras in 3D, to check poses by eye before training.

    python -m nerfexp.data.show dataset=llff dataset.root=../shared/data/nerf_llff_data/fern [out=cameras.png]

Every argument but ``out=`` is a Hydra override of the ``train`` config. Train cameras are blue, test cameras orange:
a dot at each centre, the frustum out to a small depth, and the optical axis from near (dot) to far (cross). For NDC
datasets near/far are the dataset's depth bounds in scene units. The dataset's render path (if it has one) is grey,
the unit sphere of DTU-like datasets light grey; axes have equal scale.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nerfexp.data.scene import SceneSplit  # noqa: E402

CONF = Path(__file__).resolve().parents[2] / "conf"
COLORS = {"train": "tab:blue", "test": "tab:orange", "val": "tab:green"}


def frustum_lines(c2w: np.ndarray, fx: float, fy: float, cx: float, cy: float, width: int, height: int,
                  depth: float) -> list[np.ndarray]:
    """Line strips ``(k, 3)`` of one camera's frustum out to ``depth``: four edges and the image rectangle."""
    corners = np.array([[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]])
    cam = np.stack([(corners[:, 0] - cx) / fx, -(corners[:, 1] - cy) / fy, -np.ones(4)], -1) * depth
    world = cam @ c2w[:3, :3].T + c2w[:3, 3]
    apex = c2w[:3, 3]
    return [np.stack([apex, p]) for p in world] + [np.concatenate([world, world[:1]])]


def plot_cameras(splits: dict[str, SceneSplit], out: Path, title: str = "",
                 depth_range: tuple[float, float] | None = None, render_path: np.ndarray | None = None,
                 sphere_radius: float | None = None) -> Path:
    """Draw the cameras of ``splits`` (name -> split) into the PNG ``out``; returns ``out``.

    Args:
        depth_range: near/far along the optical axis (default: each split's own near/far).
        render_path: optional ``(M, 4, 4)`` c2w drawn as a line through their centres.
        sphere_radius: draw a wireframe sphere of this radius around the origin.
    """
    fig = plt.figure(figsize=(8, 8))
    ax = fig.add_subplot(projection="3d")
    points = [np.zeros((1, 3))]
    for name, split in splits.items():
        c2w = split.c2w.double().numpy()
        k = split.intrinsics
        near, far = depth_range if depth_range is not None else (split.near, split.far)
        size = 0.15 * max(near, 0.1 * far)
        color = COLORS.get(name, "tab:gray")
        centers = c2w[:, :3, 3]
        ax.scatter(*centers.T, color=color, s=12, label=f"{name} ({len(split)})", depthshade=False)
        for m in c2w:
            for line in frustum_lines(m, k.fx, k.fy, k.cx, k.cy, k.width, k.height, size):
                ax.plot(*line.T, color=color, linewidth=0.6)
            axis = -m[:3, 2] / np.linalg.norm(m[:3, 2])
            p_near, p_far = m[:3, 3] + near * axis, m[:3, 3] + far * axis
            ax.plot(*np.stack([p_near, p_far]).T, color=color, linewidth=0.4, alpha=0.5)
            ax.scatter(*p_near, color=color, s=6, marker="o", depthshade=False)
            ax.scatter(*p_far, color=color, s=14, marker="x", depthshade=False)
            points.append(np.stack([m[:3, 3], p_near, p_far]))
    if render_path is not None and len(render_path):
        path = np.asarray(render_path)[:, :3, 3]
        ax.plot(*path.T, color="0.4", linewidth=1.0, label=f"render path ({len(path)})")
        points.append(path)
    if sphere_radius:
        u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
        sx, sy, sz = (sphere_radius * f for f in (np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v)))
        ax.plot_wireframe(sx, sy, sz, color="0.75", linewidth=0.4)
        points.append(np.array([[-sphere_radius] * 3, [sphere_radius] * 3]))
    for i, c in enumerate(("red", "green", "blue")):  # world axes at the origin
        ax.plot(*np.stack([np.zeros(3), 0.5 * np.eye(3)[i]]).T, color=c, linewidth=1.5)
    pts = np.concatenate(points)
    mid, half = (pts.max(0) + pts.min(0)) / 2.0, (pts.max(0) - pts.min(0)).max() / 2.0 * 1.05
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_zlim(mid[2] - half, mid[2] + half)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> Path:
    """Compose ``train`` with the overrides in ``argv``, load train and test, write the plot (``out=``)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    argv = list(sys.argv[1:] if argv is None else argv)
    out = Path("cameras.png")
    overrides = []
    for arg in argv:
        if arg.startswith("out="):
            out = Path(arg.split("=", 1)[1])
        else:
            overrides.append(arg)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    dataset = instantiate(cfg.dataset)
    splits = {name: dataset.load(name) for name in ("train", "test")}
    ndc = any(s.ndc for s in splits.values())
    depth_range = getattr(dataset, "depth_bounds", None) if ndc else None
    render_path = dataset.render_path(60).numpy() if hasattr(dataset, "render_path") else None
    title = (f"{type(dataset).__name__}: {getattr(dataset, 'root', '')}\n"
             + ", ".join(f"{n} {len(s)} views {s.width}x{s.height}" for n, s in splits.items())
             + (f"; NDC (axis drawn over depth bounds {depth_range[0]:.2f}..{depth_range[1]:.2f})"
                if ndc and depth_range else f"; near {splits['train'].near:.2f} far {splits['train'].far:.2f}"))
    path = plot_cameras(splits, out, title, depth_range, render_path, splits["train"].bounding_radius)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
