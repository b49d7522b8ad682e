"""Train a LoRA adapter from a grouprp config, under any launcher.

    deepspeed --num_gpus 2 launch/train.py --config configs/lyra_lora.yaml [key=value ...]
    torchrun --nproc_per_node 2 launch/train.py --config configs/lyra_lora.yaml [key=value ...]
    python launch/train.py --config configs/demo.yaml

The same as `grouprp train CONFIG [key=value ...]`, which runs under these launchers too.
"""

import argparse
import sys

from grouprp.cli import main as grouprp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the run's YAML config")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted-key overrides")
    args = parser.parse_args()
    return grouprp(["train", args.config, *args.overrides])


if __name__ == "__main__":
    sys.exit(main())
