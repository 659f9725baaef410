"""``python -m nerfexp.view run=<dir> port=7007``: a browser view of a trained or training run
(:mod:`nerfexp.view.run_viewer`); ``conf/view.yaml`` holds its keys."""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from nerfexp.cli import run_or_exit

CONF = str(Path(__file__).resolve().parent.parent.parent / "conf")


def view(cfg: DictConfig) -> None:
    from nerfexp.view.run_viewer import RunViewer

    if not cfg.run:
        raise FileNotFoundError("give run=<training run dir> (python -m nerfexp.view run=outputs/<date>/<time>)")
    RunViewer(cfg).serve(cfg.duration_s)


@hydra.main(config_path=CONF, config_name="view", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_or_exit(view, cfg)


if __name__ == "__main__":
    main()
