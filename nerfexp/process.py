"""``python -m nerfexp.process input=<images dir | video> output=<dir>``: a capture becomes a dataset (camera poses
by COLMAP); see :mod:`nerfexp.data.capture` and ``conf/process.yaml``."""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from nerfexp.cli import run_or_exit
from nerfexp.data.capture import CaptureError, process_capture

CONF = str(Path(__file__).resolve().parent.parent / "conf")


def process(cfg: DictConfig) -> dict:
    """Run :func:`process_capture` with ``cfg``'s keys and print its closing line."""
    if not cfg.input or not cfg.output:
        raise CaptureError("give input=<folder of images or a video file> and output=<dataset folder to write>")
    result = process_capture(Path(cfg.input), Path(cfg.output), cfg.num_frames, cfg.max_size, cfg.camera_model,
                             cfg.matcher, cfg.single_camera, cfg.overwrite)
    print(result.line())
    print(f"train on it: python train.py dataset=llff dataset.root={result.output}")
    return result.__dict__


@hydra.main(config_path=CONF, config_name="process", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_or_exit(process, cfg)


if __name__ == "__main__":
    main()
