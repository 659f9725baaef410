"""Weights & Biases logger. Offline by default (``WANDB_MODE``), so runs work without network and sync later
with ``wandb sync <run dir>/wandb/offline-run-*``; :mod:`nerfexp.loggers.wandb_offline` reads them back.
``wandb`` is imported only when this logger is used."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from nerfexp.loggers.local import NoLogger
from nerfexp.viz.images import to_uint8

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled", "shared")
MAX_TAG_LEN = 64  # W&B rejects longer tags


def plain(value):
    """``value`` with OmegaConf containers turned into dicts and lists.

    ``hydra.utils.instantiate`` hands its keyword arguments (``run_config``, ``job``) over as ``DictConfig``;
    given one, ``wandb.config`` would store each group as the string of its repr.
    """
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def resolve_mode(mode: str | None) -> str:
    """``mode`` if given, else ``$WANDB_MODE``, else ``offline``; ``dryrun`` (wandb's old name) means offline."""
    mode = mode or os.environ.get("WANDB_MODE") or "offline"
    mode = "offline" if mode == "dryrun" else mode
    if mode not in MODES:
        raise ValueError(f"logger.mode={mode!r} (or WANDB_MODE) is not one of {MODES}")
    return mode


def run_identity(run_dir: Path, job: dict | None, name: str | None, group: str | None,
                 tags: list[str] | None) -> tuple[str, str | None, list[str]]:
    """Name, group and tags of the W&B run of a training run.

    A multirun job (``job`` has ``sweep_dir`` and ``num``) is grouped by the sweep dir's name, named
    ``<sweep dir name>-<job num>`` and tagged with its overrides (cut to W&B's 64 characters) and with
    ``config:<id>``, the same for jobs that differ only in ``seed`` (dashboards group by it to average seeds);
    explicit ``name``/``group`` win, explicit ``tags`` come first.
    """
    job = dict(job or {})
    sweep = Path(job["sweep_dir"]).name if job.get("sweep_dir") else None
    group = group or sweep
    if not name:
        name = f"{sweep}-{job['num']}" if sweep and job.get("num") is not None else Path(run_dir).name
    overrides = [str(o) for o in job.get("overrides", [])]
    all_tags: list[str] = []
    for tag in [*(tags or []), *overrides, *([config_tag(overrides)] if sweep else [])]:
        tag = str(tag)[:MAX_TAG_LEN]
        if tag and tag not in all_tags:
            all_tags.append(tag)
    return name, group, all_tags


def config_tag(overrides: list[str]) -> str:
    """``config:<10 hex digits>`` of a job's overrides without ``seed``: one tag per configuration of a sweep."""
    kept = sorted(o for o in overrides if o.partition("=")[0].lstrip("+~") != "seed")
    return "config:" + hashlib.sha1("\n".join(kept).encode()).hexdigest()[:10]


def ply_to_obj(ply_path: Path, obj_path: Path) -> Path:
    """Write the triangle mesh of a PLY file as Wavefront OBJ (``v x y z [r g b]`` with colours in [0, 1], 1-based
    ``f``); returns ``obj_path``."""
    from plyfile import PlyData

    ply = PlyData.read(str(ply_path))
    v = ply["vertex"].data
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=-1).astype(np.float64)
    names = v.dtype.names or ()
    if all(c in names for c in ("red", "green", "blue")):
        rgb = np.stack([v["red"], v["green"], v["blue"]], axis=-1).astype(np.float64) / 255.0
        vertices = np.concatenate([xyz, rgb], axis=-1)
        vfmt = "v %.6f %.6f %.6f %.4f %.4f %.4f"
    else:
        vertices, vfmt = xyz, "v %.6f %.6f %.6f"
    faces = np.stack(list(ply["face"].data["vertex_indices"])) if len(ply["face"].data) else np.zeros((0, 3), int)
    obj_path = Path(obj_path)
    with open(obj_path, "w", encoding="utf-8") as fh:
        fh.write(f"# {len(vertices)} vertices, {len(faces)} faces, from {Path(ply_path).name}\n")
        np.savetxt(fh, vertices, fmt=vfmt)
        np.savetxt(fh, faces + 1, fmt="f %d %d %d")
    return obj_path


class WandbLogger(NoLogger):
    """Scalars, images and tables to W&B; one W&B run per training run, grouped by multirun sweep.

    Several loggers may be made one after another in one process (Hydra's basic launcher runs the jobs of a
    multirun in a loop, joblib reuses its workers): ``reinit="finish_previous"`` finishes a run a crashed job left
    open before the next starts, and :meth:`finish` closes each run cleanly.

    Args:
        run_dir: the Hydra run dir; offline files go to ``run_dir/wandb``.
        run_config: the resolved config, stored as ``wandb.config``.
        job: ``{"sweep_dir", "overrides", "num"}`` of a multirun job (group = sweep dir name, tags = overrides).
        project, entity, name, group, tags, mode, job_type: W&B settings; ``mode`` null means ``$WANDB_MODE`` or
            offline.
        run_id: continue this W&B run (``resume="allow"``: resumed if it exists, created otherwise).
    """

    def __init__(self, run_dir: Path, run_config: dict | None = None, job: dict | None = None,
                 project: str = "nerfexp", entity: str | None = None, name: str | None = None,
                 group: str | None = None, tags: list[str] | None = None, mode: str | None = None,
                 run_id: str | None = None, job_type: str = "train"):
        import wandb

        self.wandb = wandb
        self.mode = resolve_mode(mode)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        run_config, job, tags = plain(run_config), plain(job), plain(tags)
        name, group, tags = run_identity(run_dir, job, name, group, tags)
        self.step = 0  # last step logged: tables go there, since W&B drops rows logged at an earlier step
        self.run = wandb.init(project=project, entity=entity, name=name, group=group, tags=tags,
                              job_type=job_type, config=dict(run_config or {}), dir=str(run_dir), mode=self.mode,
                              id=run_id, resume="allow" if run_id else None, reinit="finish_previous",
                              settings=wandb.Settings(silent=True, console="off"))
        self._finished = False
        log.info("W&B run %s (%s mode) in %s", self.run.id, self.mode, run_dir / "wandb")

    @property
    def run_id(self) -> str:
        return self.run.id

    def log(self, metrics: dict, step: int) -> None:
        self.step = max(self.step, step)
        self.run.log(dict(metrics), step=step)

    def log_image(self, name: str, image, step: int) -> None:
        """``image`` ``(H, W, 3)`` float in [0, 1] (tensor or array) or uint8."""
        self.step = max(self.step, step)
        arr = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 else to_uint8(image)
        self.run.log({name: self.wandb.Image(arr)}, step=step)

    def log_table(self, name: str, columns: list[str], rows: list[list]) -> None:
        """A table at the last logged step (not a new one, which would push later logs of that step out)."""
        self.run.log({name: self.wandb.Table(columns=list(columns), data=[list(r) for r in rows])}, step=self.step)

    def log_figure(self, name: str, path: Path, step: int | None = None) -> None:
        """A PNG written elsewhere (e.g. :func:`nerfexp.viz.plots.plot_ray_samples`), at ``step`` or the last one."""
        import imageio.v3 as iio

        step = self.step if step is None else max(self.step, step)
        self.step = step
        self.run.log({name: self.wandb.Image(np.asarray(iio.imread(path)))}, step=step)

    def log_video(self, name: str, path: Path, fps: int) -> None:
        """An mp4/gif/webm file at the last logged step (its own frame rate is kept; ``fps`` is for arrays only)."""
        self.run.log({name: self.wandb.Video(str(path))}, step=self.step)

    def log_mesh(self, name: str, path: Path) -> None:
        """A mesh at the last logged step, as a ``wandb.Object3D``. W&B shows OBJ/GLB/STL but not PLY: a PLY is
        written out beside itself as ``<stem>.obj`` (with its vertex colours) and that file is logged."""
        path = Path(path)
        if path.suffix.lower() == ".ply":
            path = ply_to_obj(path, path.with_suffix(".obj"))
        self.run.log({name: self.wandb.Object3D(str(path))}, step=self.step)

    def finish(self) -> None:
        """Close the run; offline, also wait until its ``.wandb`` file is flushed. Safe to call twice."""
        if self._finished:
            return
        self._finished = True
        self.run.finish()
        if self.mode == "offline":
            from nerfexp.loggers.wandb_offline import wait_until_complete

            sync_file = Path(self.run.settings.sync_file)
            if not wait_until_complete(sync_file):
                log.warning("W&B offline file %s has no exit record yet; `wandb sync` may see a partial run",
                            sync_file)
