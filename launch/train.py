"""Train a LoRA adapter from a grouprp config, under any launcher.

    deepspeed --num_gpus 2 launch/train.py --config configs/lyra_lora.yaml [key=value ...]
    torchrun --nproc_per_node 2 launch/train.py --config configs/lyra_lora.yaml [key=value ...]
    python launch/train.py --config configs/demo.yaml
"""

import argparse
import logging
import os
import sys

from grouprp.cli import setup_logging
from grouprp.config import ConfigError, load_config
from grouprp.schema import DataError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the run's YAML config")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted-key overrides")
    args = parser.parse_args()
    rank = int(os.environ.get("RANK", 0))
    setup_logging(logging.INFO if rank == 0 else logging.WARNING)
    try:
        from grouprp.train import run

        run(load_config(args.config, args.overrides))
    except (ConfigError, DataError) as exc:
        if rank == 0:  # every rank finds the same problem; one report is enough
            print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
