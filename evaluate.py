"""Evaluate a trained run: `python evaluate.py run=<run dir> [split=test dataset.root=...]`."""
import hydra
from omegaconf import DictConfig

from nerfexp.cli import run_or_exit
from nerfexp.evaluate import evaluate_run


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return run_or_exit(evaluate_run, cfg).get("psnr")


if __name__ == "__main__":
    main()
