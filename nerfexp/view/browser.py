"""Headless Chromium driven by Playwright, for the viewer's tests and benchmarks: open the viewer, orbit its
camera, take screenshots. Needs the ``test`` extra (playwright) and a Chromium (Debian: ``apt-get install
chromium``); :func:`browser_unavailable` says which is missing."""
from __future__ import annotations

import contextlib
import importlib.util
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# software WebGL (SwiftShader) in a machine without a GPU or a screen; no calls out of this closed network
CHROMIUM_ARGS = ("--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--disable-gpu-sandbox",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run")


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def browser_unavailable() -> str | None:
    """Why a headless browser cannot be had here, or None when it can."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return "no Chromium on this machine (Debian: apt-get install chromium)"
    return None


@contextlib.contextmanager
def viewer_page(port: int, size: tuple[int, int] = (640, 480)) -> Iterator[object]:
    """A Playwright page showing the viewer at ``http://localhost:<port>`` in headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            page.goto(f"http://localhost:{port}")
            yield page
        finally:
            browser.close()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.2)


def orbit(page, dx: int, size: tuple[int, int] = (640, 480)) -> None:
    """Drag the mouse horizontally over the canvas by ``dx`` pixels (the viewer's camera orbits)."""
    x, y = size[0] // 3, size[1] // 2
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, 6):
        page.mouse.move(x + dx * k // 5, y)
    page.mouse.up()


def screenshot(page, path: Path):
    """The page as an ``(H, W, 3)`` uint8 array (also written to ``path``)."""
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    return iio.imread(path)[..., :3]
