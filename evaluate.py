"""Evaluate a trained run: `python evaluate.py run=<run dir> [split=test dataset.root=...]`."""
import sys

import hydra
from omegaconf import DictConfig

from nerfexp.cli import run_or_exit, secondary_rank_overrides
from nerfexp.evaluate import evaluate_run


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return run_or_exit(evaluate_run, cfg).get("psnr")


if __name__ == "__main__":
    sys.argv += secondary_rank_overrides()  # torchrun: ranks other than 0 make no Hydra run dir
    main()
