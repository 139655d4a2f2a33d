"""One optimisation step of the retrieval task, kept plain (as nanoGPT's loop body and the Ray
examples' `train_epoch` are): everything around it (Ray Train, resume, checkpoints, reports,
validation) lives in mtmh/model/train_loop.py."""

from __future__ import annotations

import torch


def train_step(
    task: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    negative_ids: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """One step on a batch of pairs ({"trigger_id": [B], "target_id": [B]}, "count": [B] for
    deduplicated pairs, "cluster_negative_id": [K * H] for a prompted variant) with negatives
    [L]; returns the losses ({"loss": total, "<head>/l_e": ...}). `task` is a RetrievalTask,
    possibly wrapped in DDP."""
    losses: dict[str, torch.Tensor] = task(
        batch["trigger_id"],
        batch["target_id"],
        negative_ids,
        batch.get("count"),
        batch.get("cluster_negative_id"),
    )
    opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    opt.step()
    return losses
