"""Adds the repository root to the config search path of nerfexp's own Hydra apps, so the study presets in
``sweeps/`` compose as a config group: ``python train.py -m +sweeps=lr``.

Hydra finds this plugin by scanning the ``hydra_plugins`` namespace package: from a checkout that is the repository
root on ``sys.path`` (``python train.py`` puts it there), from an installed package the ``hydra_plugins*`` entry of
``[tool.setuptools.packages.find]``. Other Hydra apps in the same environment are left alone: the path is added
only when the search path already holds this repository's ``conf/``.
"""
from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
SWEEPS = REPO / "sweeps"


def _local_path(path: str | None) -> Path | None:
    """The folder of a search-path entry: ``file://<dir>`` or a bare ``<dir>`` (how ``@hydra.main`` passes its
    ``config_path``); None for ``pkg://``, ``structured://`` and the like."""
    if not path:
        return None
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif "://" in path:
        return None
    try:
        return Path(path).resolve()
    except OSError:
        return None


class NerfexpSearchPathPlugin(SearchPathPlugin):
    """Appends ``file://<repo root>`` (whose ``sweeps/`` folder is then the ``sweeps`` group) after ``conf/``."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not SWEEPS.is_dir():
            return  # installed without the repository's sweeps/ folder
        folders = [_local_path(element.path) for element in search_path.get_path()]
        if CONF.resolve() in folders and REPO.resolve() not in folders:
            search_path.append(provider="nerfexp-sweeps", path=f"file://{REPO}")
