"""The viewer: a viser server showing a pipeline's renders from each browser's camera, the training cameras with
their images, the render path and the scene box. Rendering happens only in :meth:`Viewer.work`, called by whoever
owns the pipeline (the training loop between steps, or the view command's loop), so a render never sees weights
halfway through an optimiser step."""
from __future__ import annotations

import logging
import math
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
import viser
from omegaconf import DictConfig
from torch import Tensor

from nerfexp.config import ConfigError, check_number
from nerfexp.data.scene import SceneSplit
from nerfexp.pipelines.base import Pipeline
from nerfexp.view.camera import c2w_from_viewer, fov_y_of, viewer_pose
from nerfexp.view.progressive import OUTPUTS, RenderJob, ViewRequest, levels
from nerfexp.viz.images import to_uint8

log = logging.getLogger(__name__)
SLICE_S = 0.05  # one slice of a render: short, so training steps and camera moves are never held up for long


def check_viewer_config(cfg: DictConfig) -> None:
    """The ``viewer.*`` keys, each named in its error."""
    check_number("viewer.port", cfg.port, int, low=0, high=65535)
    check_number("viewer.max_resolution", cfg.max_resolution, int, low=16)
    check_number("viewer.moving_resolution", cfg.moving_resolution, int, low=16)
    check_number("viewer.frame_budget_s", cfg.frame_budget_s, float, low=0, low_open=True)
    check_number("viewer.max_share", cfg.max_share, float, low=0, low_open=True, high=1)
    check_number("viewer.refresh_s", cfg.refresh_s, float, low=0)
    check_number("viewer.max_cameras", cfg.max_cameras, int, low=0)
    if cfg.output not in OUTPUTS:
        raise ConfigError(f"viewer.output={cfg.output!r} is not one of {OUTPUTS}")


def check_port_free(host: str, port: int, key: str = "viewer.port") -> None:
    """One line naming the port (config key ``key``) when something listens there already (viser itself would
    silently take the next free port, and the address printed to the user would be wrong)."""
    check_number(key, port, int, low=0, high=65535)
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"{key}={port}: the port is in use on {host} ({exc.strerror}); choose another "
                              f"with port=<N> (python -m nerfexp.view) or viewer.port=<N> (train.py), e.g. "
                              f"{port + 1}, or 0 for any free port") from None


@dataclass
class ClientView:
    """One browser: its newest camera (written by viser's threads), and the render under way for it."""

    client: viser.ClientHandle
    request: ViewRequest | None = None
    version: int = 0  # bumped by every camera message and every change of what is shown
    job: RenderJob | None = None
    job_version: int = -1
    job_level: int = 0
    job_model: int = -1
    finished_version: int = -1  # the version whose refinement ended ...
    finished_level: int = 0  # ... at this level
    finished_model: int = -1  # ... with this model
    finished_at: float = 0.0


class Viewer:
    """A viser server for one scene.

    Args:
        cfg: the ``viewer`` config node (port, resolutions, budgets, what to show).
        pipeline: renders the views; the caller owns it and calls :meth:`work` when rendering is allowed.
        split: the training split: its camera model makes the rays (near/far, NDC, box) and its cameras and images
            are drawn as frusta.
        background: the colour behind the scene (the evaluation background).
        render_path: camera-to-world poses of the dataset's video path, drawn as a line (or None).
        box: half size of the scene box to draw (or None).
        title: shown at the top of the panel.
        training: show training statistics and a pause button.
    """

    def __init__(self, cfg: DictConfig, pipeline: Pipeline, split: SceneSplit, background: Tensor,
                 device: torch.device, render_path: Tensor | None = None, box: float | None = None,
                 title: str = "nerfexp", training: bool = False):
        check_viewer_config(cfg)
        self.cfg, self.pipeline, self.split, self.device = cfg, pipeline, split, device
        self.background = background
        self.model_version = 0
        self.rays_per_s = 20_000.0  # refined by every slice rendered
        self.frames_sent = 0
        self.final_frames_sent = 0
        self.render_seconds = 0.0
        self.paused = False
        self.lock = threading.Lock()
        self.clients: dict[int, ClientView] = {}
        check_port_free(cfg.host, cfg.port)
        self.server = viser.ViserServer(host=cfg.host, port=int(cfg.port), label=title, verbose=False)
        self.port = self.server.get_port()
        self._build_gui(training)
        self._build_scene(render_path, box)
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)
        log.info("viewer: http://localhost:%d (open it in a browser)", self.port)

    # -- what the browser shows besides the renders -------------------------------------------------------------
    def _build_gui(self, training: bool) -> None:
        gui = self.server.gui
        outputs = [o for o in OUTPUTS if o != "normals" or "normal" in self.pipeline.render_keys]
        self.output = gui.add_dropdown("Output", outputs, initial_value=self.cfg.output
                                       if self.cfg.output in outputs else "colour")
        self.max_resolution = gui.add_slider("Max resolution", min=32, max=max(2048, int(self.cfg.max_resolution)),
                                             step=16, initial_value=int(self.cfg.max_resolution))
        self.show_cameras = gui.add_checkbox("Training cameras", initial_value=bool(self.cfg.show_cameras))
        self.stats = gui.add_markdown("waiting for the first frame")
        self.pause_button = gui.add_button("Pause training", visible=training)
        self.output.on_update(lambda _: self.rerender())
        self.max_resolution.on_update(lambda _: self.rerender())
        self.show_cameras.on_update(lambda _: self._set_cameras_visible(self.show_cameras.value))
        self.pause_button.on_click(lambda _: self.set_paused(not self.paused))

    def _build_scene(self, render_path: Tensor | None, box: float | None) -> None:
        scene, split = self.server.scene, self.split
        # nothing here is lit: no environment map and no shadows keep each browser frame cheap (software WebGL
        # spent most of a core on them)
        scene.configure_environment_map(hdri=None)
        scene.configure_default_lights(enabled=True, cast_shadow=False)
        c2w = split.c2w.detach().cpu().double().numpy()
        up = c2w[:, :3, 1].mean(0)
        scene.set_up_direction(up / max(np.linalg.norm(up), 1e-9))
        centres = c2w[:, :3, 3]
        spread = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) if len(centres) > 1 else 1.0
        fov, aspect = fov_y_of(split.intrinsics), split.width / split.height
        self.frusta = []
        # the browser starts at camera 0: its frustum would fill the view with its own photo, so it is left out
        step = max(1, math.ceil(max(split.height, split.width) / 64))  # small thumbnails
        n_show = min(len(split) - 1, int(self.cfg.max_cameras))
        for k in np.linspace(1, len(split) - 1, n_show).round().astype(int) if n_show > 0 else []:
            wxyz, position = viewer_pose(c2w[k])
            image = split.composited(int(k), self.background.cpu())
            self.frusta.append(scene.add_camera_frustum(
                f"/cameras/{k:04d}", fov=fov, aspect=aspect, scale=0.05 * spread, color=(40, 90, 200),
                thickness=1.5, thickness_units="screen",  # thin at any distance: they must not hide the scene
                image=to_uint8(image[::step, ::step]), format="jpeg", wxyz=wxyz, position=position,
                visible=bool(self.cfg.show_cameras)))
        if render_path is not None and self.cfg.show_path and len(render_path) > 1:
            p = render_path[:, :3, 3].detach().cpu().double().numpy()
            scene.add_line_segments("/render_path", np.stack([p[:-1], p[1:]], axis=1), colors=(230, 120, 20),
                                    thickness=2.0, thickness_units="screen")
        if box is not None and self.cfg.show_box and not split.ndc:
            scene.add_box("/scene_box", color=(120, 120, 120), dimensions=(2 * box,) * 3, wireframe=True)
        # the browser starts at the first training camera, looking where it looks
        wxyz, position = viewer_pose(c2w[0])
        forward = -c2w[0, :3, 2]
        depth = float(np.dot(-position, forward))  # to the point of the view axis nearest the world origin
        self.server.initial_camera.position = position
        self.server.initial_camera.look_at = position + forward * (depth if depth > 1e-3 else 1.0)
        self.server.initial_camera.up = c2w[0, :3, 1]
        self.server.initial_camera.fov = fov

    def _set_cameras_visible(self, visible: bool) -> None:
        for frustum in self.frusta:
            frustum.visible = visible

    # -- browsers -----------------------------------------------------------------------------------------------
    def _on_connect(self, client: viser.ClientHandle) -> None:
        view = ClientView(client)
        with self.lock:
            self.clients[client.client_id] = view
        client.camera.on_update(lambda camera: self._on_camera(view, camera))
        self._on_camera(view, client.camera)

    def _on_disconnect(self, client: viser.ClientHandle) -> None:
        with self.lock:
            self.clients.pop(client.client_id, None)

    def _on_camera(self, view: ClientView, camera) -> None:
        request = ViewRequest(c2w_from_viewer(camera.wxyz, camera.position), float(camera.fov),
                              int(camera.image_width), int(camera.image_height))
        with self.lock:
            view.request, view.version = request, view.version + 1

    def rerender(self) -> None:
        """Render every browser's view again from the coarsest level (what is shown changed)."""
        with self.lock:
            for view in self.clients.values():
                view.version += 1

    def model_changed(self) -> None:
        """The weights changed (a training step, a newer checkpoint): views are refined again in time."""
        self.model_version += 1

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.pause_button.label = "Resume training" if paused else "Pause training"

    @property
    def connected(self) -> bool:
        return bool(self.clients)

    def set_stats(self, text: str) -> None:
        """The panel's status text (only sent while a browser is connected)."""
        if self.clients and text != self.stats.content:  # the view command's idle loop repeats itself
            self.stats.content = text

    # -- rendering ----------------------------------------------------------------------------------------------
    def _levels(self, request: ViewRequest) -> list[int]:
        return levels(int(self.cfg.moving_resolution), int(self.max_resolution.value),
                      max(request.canvas_w, request.canvas_h))

    def _next_job(self, view: ClientView, now: float) -> RenderJob | None:
        """The render ``view`` needs next, or None: a new camera starts coarse, a resting one refines level by
        level while the predicted time of the next level fits ``viewer.frame_budget_s``, a finished one is
        rendered again at its finest level when the model changed ``viewer.refresh_s`` ago or more."""
        request, version = view.request, view.version
        if request is None:
            return None
        steps = self._levels(request)
        if view.job is not None:
            if view.job_version == version or view.job_level == 0:
                return view.job  # coarse frames finish even when the camera moved on: something must show
            view.job = None
        if view.finished_version == version:
            stale = view.finished_model != self.model_version
            if not stale or now - view.finished_at < float(self.cfg.refresh_s):
                return None
            level = view.finished_level
        elif view.job_version == version and view.job_level + 1 < len(steps):
            level = view.job_level + 1
            aspect_rays = steps[level] ** 2 * min(request.canvas_w, request.canvas_h) / max(request.canvas_w,
                                                                                           request.canvas_h, 1)
            if aspect_rays / self.rays_per_s > float(self.cfg.frame_budget_s):
                self._finished(view, now)  # the next level would take too long: this one is the last
                return None
        else:
            level = 0
        view.job = RenderJob(self.pipeline, self.split, request, steps[level], self.background, self.device)
        view.job_version, view.job_level, view.job_model = version, level, self.model_version
        return view.job

    def has_work(self) -> bool:
        """Whether some browser waits for a render (cheap: no browser, no work)."""
        if not self.clients:
            return False
        now = time.monotonic()
        with self.lock:
            views = list(self.clients.values())
        return any(self._next_job(v, now) is not None for v in views)

    def work(self, budget_s: float) -> float:
        """Render for about ``budget_s`` seconds at most (in slices), send finished frames; returns the seconds
        spent."""
        spent = 0.0
        while spent < budget_s:
            now = time.monotonic()
            with self.lock:
                views = list(self.clients.values())
            jobs = [(v, self._next_job(v, now)) for v in views]
            jobs = [(v, j) for v, j in jobs if j is not None]
            if not jobs:
                break
            for view, job in jobs:
                t0 = time.perf_counter()
                n = int(self.rays_per_s * min(SLICE_S, max(budget_s - spent, 0.005)))
                done = job.advance(max(256, n), int(self.cfg.chunk))
                dt = time.perf_counter() - t0
                self.rays_per_s = 0.7 * self.rays_per_s + 0.3 * done / max(dt, 1e-6)
                spent += dt
                if job.done:
                    self._send(view, job)
                if spent >= budget_s:
                    break
        self.render_seconds += spent
        return spent

    def _send(self, view: ClientView, job: RenderJob) -> None:
        image = job.image(self.output.value)
        view.client.scene.set_background_image(image, format="jpeg", jpeg_quality=int(self.cfg.jpeg_quality))
        view.job = None
        self.frames_sent += 1
        if view.job_level + 1 >= len(self._levels(job.request)):
            self._finished(view, time.monotonic())

    def _finished(self, view: ClientView, now: float) -> None:
        """The frame of ``view``'s last job is the finest it gets until the camera, the settings or the model
        change."""
        view.finished_version, view.finished_level = view.job_version, view.job_level
        view.finished_model, view.finished_at = view.job_model, now
        self.final_frames_sent += 1

    def close(self) -> None:
        self.server.stop()


def scene_extras(dataset, split: SceneSplit, dataset_cfg) -> tuple[Tensor | None, float | None]:
    """What a viewer of ``dataset`` draws besides the cameras: its video path (60 poses, where it has one) and the
    scene box's half size (bounded scenes; none in NDC)."""
    path = dataset.render_path(60) if hasattr(dataset, "render_path") else None
    box = split.bounding_box or (dataset_cfg.get("bound") if not split.ndc else None)
    return path, box
