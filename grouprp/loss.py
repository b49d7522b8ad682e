"""The training loss on trained tokens only, without ever building the sequence x vocabulary logits.

With a 131,072-token vocabulary and 8,192-token examples, the logits of a whole sequence and their gradient take
gigabytes, most of them for positions that carry no loss (the prompt, other characters' untrained turns). Here
the model body runs as usual; then the LM head and the cross-entropy run only at the positions whose next token
is trained, a chunk at a time, each chunk's logits recomputed in backward rather than kept. On a GPU with Liger
Kernel installed its fused linear cross-entropy does the same in one kernel. The loss is normalized exactly as
transformers' causal-LM loss (over the trained tokens of the whole accumulated batch), so `train.loss: full`
gives the same numbers.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.utils.checkpoint import checkpoint

from grouprp.tokenize import IGNORE_INDEX


CHUNK = 1024
"""Trained positions whose logits exist at one time (1,024 x 131,072 fp32 logits: 0.5 GB)."""


def loss_path(mode: str) -> str:
    """What `train.loss` runs on this machine: full, chunked, or liger (fused, GPU only)."""
    if mode == "full":
        return "full"
    if torch.cuda.is_available():
        try:
            import liger_kernel.transformers.functional  # noqa: F401
        except ImportError:
            return "chunked"
        return "liger"
    return "chunked"


def causal_lm_loss(model, inputs: dict, num_items_in_batch=None, chunk: int = CHUNK, path: str = "chunked"):
    """Mean next-token cross-entropy over trained tokens, as the model's own loss computes it."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = causal.get_output_embeddings()
    forward = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
    hidden = causal.base_model(**forward, use_cache=False).last_hidden_state
    targets = inputs["labels"][:, 1:]
    trained = targets != IGNORE_INDEX
    selected, goal = hidden[:, :-1][trained], targets[trained]
    if path == "liger":
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        total = liger_fused_linear_cross_entropy(selected, head.weight, goal, reduction="sum")
    else:
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, len(goal), chunk):
            total = total + checkpoint(_chunk_loss, head, selected[start:start + chunk], goal[start:start + chunk],
                                       use_reentrant=False)
    count = num_items_in_batch if num_items_in_batch is not None else trained.sum()
    return total / count


def _chunk_loss(head, hidden: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()  # upcast as transformers' loss does
    return torch.nn.functional.cross_entropy(logits, goal, reduction="sum")


class TrainedTokenLoss:
    """Trainer mixin: `train.loss` chunked (or liger) instead of the model's own full-logits loss."""

    loss_path = "chunked"

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch: Optional[int] = None):
        if not model.training:
            # evaluation: each batch's own mean. The token count across ranks that training normalizes by would
            # bias the eval loss when the held-out examples do not divide evenly among the ranks: the Trainer drops
            # the repeated example that evens them out, but not the share of the count it took.
            num_items_in_batch = None
        if self.loss_path == "full":
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        loss = causal_lm_loss(self.accelerator.unwrap_model(model), inputs, num_items_in_batch,
                              path=self.loss_path)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss does for the model's loss
        return (loss, {"loss": loss}) if return_outputs else loss
