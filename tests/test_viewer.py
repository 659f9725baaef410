"""The live viewer: the browser's camera is the project's camera, renders refine progressively within their
budgets, a training run pauses and shares the processor as configured, errors are one line, and a real headless
Chromium shows the scene the project renders."""
from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_train, tiny_overrides
from nerfexp.cameras import Intrinsics
from nerfexp.config import ConfigError, user_error_message
from nerfexp.data.demo_dataset import DemoDataset
from nerfexp.data.scene import SceneSplit
from nerfexp.pipelines.build import build_pipeline
from nerfexp.view.browser import browser_unavailable, screenshot, viewer_page, wait_for
from nerfexp.view.camera import c2w_from_viewer, fov_y_of, render_intrinsics, view_rays, viewer_pose
from nerfexp.view.live import LiveViewer
from nerfexp.view.progressive import RenderJob, ViewRequest, levels
from nerfexp.view.server import ClientView, Viewer

CONF = Path(__file__).resolve().parent.parent / "conf"


def viewer_cfg(**overrides):
    cfg = OmegaConf.load(CONF / "viewer" / "default.yaml")
    cfg.port = 0
    return OmegaConf.merge(cfg, overrides)


@pytest.fixture(scope="module")
def scene(demo_cache):
    """A small demo split and an (untrained) tiny NeRF pipeline."""
    split = DemoDataset(cache_dir=demo_cache, resolution=32, n_train=20, n_val=1, n_test=2).load("train")
    pipeline = build_pipeline(compose_train(tiny_overrides(demo_cache))).eval()
    return split, pipeline


class FakeBrowser:
    """Stands in for viser's client handle: records the frames the viewer sends."""

    def __init__(self):
        self.client_id = id(self)
        self.frames: list[np.ndarray] = []
        self.scene = self

    def set_background_image(self, image, format="jpeg", jpeg_quality=None):
        self.frames.append(image)


def connect(viewer: Viewer, request: ViewRequest) -> tuple[FakeBrowser, ClientView]:
    browser = FakeBrowser()
    view = ClientView(browser, request=request, version=1)
    viewer.clients[browser.client_id] = view
    return browser, view


def move(viewer: Viewer, view: ClientView, request: ViewRequest) -> None:
    with viewer.lock:
        view.request, view.version = request, view.version + 1


def test_poses_round_trip_through_viser_and_its_camera_casts_the_training_rays(scene):
    split, _ = scene
    for k in (0, 7):
        c2w = c2w_from_viewer(*viewer_pose(split.c2w[k]))
        assert torch.allclose(c2w, split.c2w[k], atol=1e-6)
        k_view = render_intrinsics(fov_y_of(split.intrinsics), split.width, split.height, split.width)
        ours, theirs = view_rays(split, c2w, k_view, torch.device("cpu")), split.rays(k)
        for key in ("origins", "directions", "near", "far"):
            assert torch.allclose(getattr(ours, key), getattr(theirs, key), atol=1e-5), key
    # viser's frame looks along +z with y down: its identity camera is ours turned half a turn about x
    c2w = c2w_from_viewer(np.array([1.0, 0, 0, 0]), np.zeros(3))
    assert torch.allclose(c2w[:3, 2], torch.tensor([0.0, 0, -1])) and torch.allclose(c2w[:3, 1], torch.tensor([0.0, -1, 0]))


def test_a_wider_canvas_sees_the_same_centre_and_ndc_keeps_the_training_focal():
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([0.1, -0.2, 0.3])
    k = Intrinsics(40.0, 40.0, 24.0, 16.0, 48, 32)
    blank = torch.zeros(1, 32, 48, 3)
    split = SceneSplit(blank, blank[..., :1], c2w[None], k, 0.0, 1.0, ndc=True, unbounded=True)
    fov = fov_y_of(k)
    same = view_rays(split, c2w, render_intrinsics(fov, 48, 32, 48), torch.device("cpu"))
    assert torch.allclose(same.origins, split.rays(0).origins, atol=1e-5)
    assert torch.allclose(same.directions, split.rays(0).directions, atol=1e-5)
    # a canvas twice as wide, rendered at 96 x 32: its middle 48 columns are the training view's rays, in the
    # NDC space of the training focal length (the viewer's own focal is only the same by coincidence of fov)
    wide = view_rays(split, c2w, render_intrinsics(fov, 96, 32, 96), torch.device("cpu"))
    middle = torch.arange(96 * 32).reshape(32, 96)[:, 24:72].reshape(-1)
    assert torch.allclose(wide.origins[middle], split.rays(0).origins, atol=1e-5)
    assert torch.allclose(wide.directions[middle], split.rays(0).directions, atol=1e-5)
    assert wide.unbounded


def test_levels_go_from_coarse_to_the_cap_or_the_canvas():
    assert levels(96, 512, 800) == [96, 192, 384, 512]
    assert levels(96, 2048, 300) == [96, 192, 300]
    assert levels(96, 64, 800) == [64]


def test_frames_refine_while_the_camera_rests_and_restart_coarse_when_it_moves(scene):
    split, pipeline = scene
    viewer = Viewer(viewer_cfg(moving_resolution=16, max_resolution=64, frame_budget_s=100.0, refresh_s=0.0),
                    pipeline, split, torch.ones(3), torch.device("cpu"))
    try:
        assert not viewer.has_work() and viewer.work(1.0) == 0.0  # no browser, no rendering
        request = ViewRequest(split.c2w[3], fov_y_of(split.intrinsics), 200, 100)
        browser, view = connect(viewer, request)
        while viewer.has_work():
            viewer.work(0.5)
        assert [f.shape for f in browser.frames] == [(8, 16, 3), (16, 32, 3), (32, 64, 3)]
        # the finest frame is the project's render of that camera
        job = RenderJob(pipeline, split, request, 64, torch.ones(3), torch.device("cpu"))
        while not job.done:
            job.advance(10_000, 4096)
        assert np.abs(browser.frames[-1].astype(int) - job.image("colour").astype(int)).max() <= 1
        # a camera move starts again from the coarse frame; an unchanged model is not rendered again
        move(viewer, view, ViewRequest(split.c2w[5], request.fov_y, 200, 100))
        viewer.work(0.5)
        assert browser.frames[3].shape == (8, 16, 3)
        while viewer.has_work():
            viewer.work(0.5)
        n = len(browser.frames)
        assert not viewer.has_work()
        # a changed model (training, a newer checkpoint) is rendered again, at the finest level at once
        viewer.model_changed()
        viewer.work(5.0)
        assert len(browser.frames) == n + 1 and browser.frames[-1].shape == (32, 64, 3)
        # the frame budget stops the refinement: no level predicted to take longer is started
        viewer.cfg.frame_budget_s = 1e-9
        move(viewer, view, request)
        while viewer.has_work():
            viewer.work(0.5)
        assert browser.frames[-1].shape == (8, 16, 3)
        # depth and opacity are pictures of their own
        viewer.cfg.frame_budget_s = 100.0
        viewer.output.value = "opacity"
        viewer.rerender()
        while viewer.has_work():
            viewer.work(0.5)
        frame = browser.frames[-1]
        assert np.array_equal(frame[..., 0], frame[..., 1])  # grey
    finally:
        viewer.close()


def test_training_renders_within_its_share_and_a_pause_holds_the_loop(scene):
    split, pipeline = scene
    live = LiveViewer(viewer_cfg(moving_resolution=16, max_resolution=32, max_share=0.25, refresh_s=0.0),
                      pipeline, split, torch.ones(3), torch.device("cpu"), None, 1.5, "test")
    try:
        stop = threading.Event()
        live.after_step(pipeline, 1, 0.1, 10.0, 1024, 0.01, stop.is_set)
        assert live.render_seconds == 0.0  # no browser: nothing rendered, nothing sent
        browser, _ = connect(live.viewer, ViewRequest(split.c2w[2], fov_y_of(split.intrinsics), 64, 64))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:  # "training": 20 ms steps
            time.sleep(0.02)
            live.after_step(pipeline, 2, 0.1, 10.0, 1024, 0.02, stop.is_set)
        wall = time.monotonic() - t0
        assert browser.frames and live.render_seconds > 0
        assert live.render_seconds <= 0.25 * wall + 0.3, (live.render_seconds, wall)  # share + one slice
        # pause: after_step does not return until resumed (or stopped)
        live.viewer.set_paused(True)
        returned = threading.Event()
        worker = threading.Thread(target=lambda: (live.after_step(pipeline, 3, 0.1, 10.0, 1024, 0.02, stop.is_set),
                                                  returned.set()))
        worker.start()
        time.sleep(0.5)
        assert not returned.is_set()
        assert live.viewer.pause_button.label == "Resume training"
        live.viewer.set_paused(False)
        assert returned.wait(5.0)
        live.viewer.set_paused(True)
        worker = threading.Thread(target=lambda: live.after_step(pipeline, 4, 0.1, 10.0, 1024, 0.02, stop.is_set))
        worker.start()
        stop.set()  # Ctrl-C while paused ends the pause
        worker.join(5.0)
        assert not worker.is_alive()
    finally:
        live.close()


def test_a_port_in_use_is_one_line_naming_it(scene):
    split, pipeline = scene
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError) as err:
            Viewer(viewer_cfg(port=port), pipeline, split, torch.ones(3), torch.device("cpu"))
    message = user_error_message(err.value)
    assert message is not None and f"viewer.port={port}" in message and "in use" in message and "\n" not in message


def test_bad_viewer_keys_are_named(scene):
    split, pipeline = scene
    for key, value in (("max_share", 0), ("max_share", 2.0), ("max_resolution", -1), ("output", "rgbd")):
        with pytest.raises(ConfigError, match=f"viewer.{key}="):
            Viewer(viewer_cfg(**{key: value}), pipeline, split, torch.ones(3), torch.device("cpu"))


def test_a_run_without_checkpoint_says_so(tmp_path):
    from nerfexp.view.run_viewer import RunViewer

    run = tmp_path / "run"
    run.mkdir()
    OmegaConf.save(compose_train(["logger=none"]), run / "config.yaml")
    cfg = OmegaConf.load(CONF / "view.yaml")
    cfg = OmegaConf.merge({k: v for k, v in cfg.items() if k not in ("defaults", "hydra")},
                          {"viewer": OmegaConf.load(CONF / "viewer" / "default.yaml"), "run": str(run), "port": 0})
    with pytest.raises(FileNotFoundError) as err:
        RunViewer(cfg)
    assert "no checkpoint" in user_error_message(err.value)


# -- a real browser ---------------------------------------------------------------------------------------------
def browser_or_skip() -> None:
    reason = browser_unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def trained_run(demo_cache, tmp_path_factory) -> Path:
    """The tiny demo NeRF after 150 steps (blurry, but the scene's colours and shape)."""
    from nerfexp.train import train

    run = tmp_path_factory.mktemp("viewer") / "run"
    train(compose_train(tiny_overrides(demo_cache) + ["trainer.max_steps=150", "trainer.eval_at_end=false"]), run)
    return run


def view_command_cfg(run: Path, **viewer):
    """``conf/view.yaml`` as ``python -m nerfexp.view run=<run> port=0`` composes it, with ``viewer`` keys."""
    cfg = OmegaConf.load(CONF / "view.yaml")
    return OmegaConf.merge({k: v for k, v in cfg.items() if k not in ("defaults", "hydra")}, {
        "viewer": OmegaConf.merge(OmegaConf.load(CONF / "viewer" / "default.yaml"), viewer),
        "run": str(run), "port": 0, "device": "cpu"})


def test_the_view_command_reloads_a_newer_checkpoint(trained_run, tmp_path):
    from nerfexp.checkpoint import latest_checkpoint, save_checkpoint
    from nerfexp.view.run_viewer import RunViewer

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    rv = RunViewer(view_command_cfg(run))
    try:
        assert rv.step == 150 and not rv.reload_if_newer()
        state = torch.load(latest_checkpoint(run / "checkpoints"), weights_only=False)
        name, tensor = next((k, v) for k, v in state["pipeline"].items() if v.is_floating_point())
        state["pipeline"][name] = tensor + 1.0
        state["step"] = 151
        save_checkpoint(state, run / "checkpoints", 151)
        version = rv.viewer.model_version
        assert rv.reload_if_newer() and rv.step == 151 and rv.viewer.model_version == version + 1
        assert torch.equal(rv.pipeline.state_dict()[name], tensor + 1.0)  # the browser now sees the new weights
    finally:
        rv.viewer.close()


def test_headless_chromium_shows_the_scene_the_project_renders(trained_run, tmp_path):
    browser_or_skip()
    from nerfexp.view.run_viewer import RunViewer

    rv = RunViewer(view_command_cfg(trained_run, show_cameras=False, show_path=False, show_box=False,
                                    max_resolution=160, moving_resolution=40))
    stop = threading.Event()
    server = threading.Thread(target=lambda: [rv.poll() for _ in iter(stop.is_set, True)], daemon=True)
    server.start()
    try:
        seen = []  # the browser's camera when its finest frame went out

        def finest_frame_sent() -> bool:
            if rv.viewer.final_frames_sent and not seen:
                seen.extend(v.request for v in rv.viewer.clients.values())
            return bool(seen)

        with viewer_page(rv.viewer.port) as page:
            wait_for(finest_frame_sent, 90, "the finest frame of the browser's view")
            time.sleep(2.0)  # the page draws it
            shot = screenshot(page, tmp_path / "viewer.png")
        request = seen[0]
    finally:
        stop.set()
        server.join(10)
        rv.viewer.close()
    # the project's own render of the browser's camera at the resolution the viewer sent, and the screenshot
    # (the browser stretches the frame over its canvas) brought back to that resolution
    from PIL import Image

    job = RenderJob(rv.pipeline, rv.viewer.split, request, 160, rv.viewer.background, torch.device("cpu"))
    while not job.done:
        job.advance(50_000, 8192)
    ours = job.image("colour").astype(float)
    h, w = ours.shape[:2]
    assert shot.shape[1] / shot.shape[0] == pytest.approx(w / h, rel=0.02)
    shot = np.asarray(Image.fromarray(shot).resize((w, h), Image.Resampling.BOX)).astype(float)
    # compare the lower-left region: the panel floats at the top right, a notice may sit at the top left
    region = (slice(h // 3, h - h // 12), slice(w // 10, 3 * w // 4))
    a, b = shot[region], ours[region]
    assert b.std() > 10, "the reference render is blank: the test would prove nothing"
    corr = np.corrcoef(a.reshape(-1), b.reshape(-1))[0, 1]
    assert corr > 0.9 and np.abs(a - b).mean() < 12, (corr, np.abs(a - b).mean())
    # and the scene is there: the view differs clearly from an empty viewer (a plain white page)
    assert np.abs(a - 255.0).mean() > 5 * max(np.abs(a - b).mean(), 1.0)


def test_training_with_the_viewer_on_and_no_browser_renders_nothing(demo_cache, tmp_path):
    from nerfexp.train import train

    overrides = tiny_overrides(demo_cache) + ["trainer.max_steps=20", "trainer.eval_at_end=false",
                                              "trainer.viewer=true", "viewer.port=0"]
    summary = train(compose_train(overrides), tmp_path / "run")
    assert summary["steps"] == 20 and summary["viewer_render_s"] == 0.0
    assert 0 < summary["wall_rays_per_s"] <= summary["rays_per_s"]
    with socket.socket() as busy:  # a busy port stops the run before any data is loaded
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"viewer.port={port}: the port is in use"):
            train(compose_train(overrides[:-1] + [f"viewer.port={port}"]), tmp_path / "run2")
    assert not (tmp_path / "run2" / "checkpoints").exists()
