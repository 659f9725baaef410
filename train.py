"""Train a NeRF: `python train.py [dataset=... encoder=... key=value ...]` (see conf/train.yaml)."""
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nerfexp.cli import run_or_exit, secondary_rank_overrides
from nerfexp.train import train


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Returns the final validation PSNR: what sweepers (Optuna, W&B) optimise. Test PSNR chooses nothing."""
    summary = run_or_exit(train, cfg, Path(HydraConfig.get().runtime.output_dir))
    return summary.get("val_psnr")


if __name__ == "__main__":
    sys.argv += secondary_rank_overrides()  # torchrun: ranks other than 0 make no Hydra run dir
    main()
