"""The built-in demo dataset: the procedural scene, generated once into a cache folder, loaded as Blender data."""
from __future__ import annotations

from pathlib import Path

from nerfexp.config import check_number
from nerfexp.data.blender import BlenderDataset
from nerfexp.data.demo import DemoSceneSpec, ensure_demo_scene


def default_cache_dir() -> Path:
    """``~/.cache/nerfexp`` (the same on every platform)."""
    return Path.home() / ".cache" / "nerfexp"


class DemoDataset(BlenderDataset):
    """Generates the demo scene on first use (``cache_dir`` or ``~/.cache/nerfexp``) and loads it.

    Args:
        n_train, n_val, n_test, resolution, seed: the scene generator's settings (a change makes a new scene).
        other args: as :class:`BlenderDataset`.
    """

    def __init__(self, cache_dir: str | Path | None = None, n_train: int = 40, n_val: int = 4, n_test: int = 8,
                 resolution: int = 64, scene_seed: int = 0, downscale: int = 1, background: str = "white",
                 near: float = 2.0, far: float = 6.0, testskip: int = 1, root: str | None = None,
                 n_views: int | None = None, bound: float = 1.5, clip_rays: bool = False):
        for key, value, low in (("n_train", n_train, 1), ("n_val", n_val, 1), ("n_test", n_test, 1),
                                ("resolution", resolution, 4), ("scene_seed", scene_seed, 0)):
            check_number(key, value, int, low=low)
        spec = DemoSceneSpec(n_train=n_train, n_val=n_val, n_test=n_test, resolution=resolution, seed=scene_seed)
        cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        scene_root = Path(root).expanduser() if root else ensure_demo_scene(cache / "demo", spec)
        super().__init__(scene_root, downscale=downscale, background=background, near=near, far=far,
                         testskip=testskip, n_views=n_views, bound=bound, clip_rays=clip_rays)
