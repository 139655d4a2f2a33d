"""Mixed negative sampling (Yang et al. 2020) with the logQ correction it needs, in one object.

A batch's candidates are its B in-batch positives (drawn with the data, so in proportion to
item popularity) plus L random negatives drawn by this sampler (uniform over the catalog).
The logQ correction (Yi et al. 2019) subtracts each candidate's log sampling probability from
its logit. Keeping `sample` and `log_q` on one object, the way generative-recommenders pairs a
sampler with its correction, means the correction cannot drift from how negatives are drawn:
change the sampler, and its `log_q` changes with it.

Draws are a pure function of (seed, rank, step): a worker resumed from a checkpoint draws
exactly the negatives the failed one would have.

Example:
    sampler = MixedNegatives(log_popularity, num_random=256, seed=0)
    neg_ids = sampler.sample(rank=0, step=12)                  # [L]
    log_q = sampler.log_q(target_ids, len(neg_ids))            # [B + L]
"""

from __future__ import annotations

import math

import numpy as np
import torch


class MixedNegatives:
    """In-batch positives plus `num_random` uniform random items per batch."""

    def __init__(self, log_popularity: np.ndarray, num_random: int, seed: int) -> None:
        """log_popularity: [N] log of each item's share of the training positives."""
        self.log_popularity = torch.as_tensor(log_popularity, dtype=torch.float32)
        self.num_items = len(self.log_popularity)
        self.num_random = num_random
        self.seed = seed

    def sample(self, rank: int, step: int, device: torch.device | None = None) -> torch.Tensor:
        """[L] uniform item ids for one step of one worker."""
        gen = torch.Generator().manual_seed(hash((self.seed, rank, step)) & 0x7FFF_FFFF)
        ids = torch.randint(0, self.num_items, (self.num_random,), generator=gen)
        return ids.to(device) if device is not None else ids

    def log_q(self, pos_ids: torch.Tensor, num_random: int) -> torch.Tensor:
        """[B + L] log probability that each candidate column holds its item.

        In-batch: one batch of B positives holds item j about B * p_j times. Random: L draws
        uniform over N items hold a given item L / N times."""
        log_pop = self.log_popularity.to(pos_ids.device)
        in_batch = log_pop[pos_ids.long()] + math.log(len(pos_ids))
        uniform = torch.full(
            (num_random,), math.log(max(num_random, 1) / self.num_items), device=pos_ids.device
        )
        return torch.cat([in_batch, uniform])


class ClusterNegatives:
    """Hard negatives for divide and conquer: per batch, `per_cluster` items drawn uniformly
    (with replacement) from every cluster, shared by the batch's rows of that cluster. Within
    a cluster most items look alike, so these ask for the fine distinctions a catalog-wide
    negative never does; a row never sees another cluster's (`foreign` masks them).

    Shared columns rather than each row's own draws: one matrix product scores them all, and
    the tower embeds each drawn item once per batch (per-row draws cost 2.3x a step).

    Their logQ correction is their own: a cluster's draws hold a given member
    `per_cluster / size(cluster)` times. Draws are a pure function of (seed, rank, step), as
    `MixedNegatives`'.

    Example:
        hard = ClusterNegatives(assignments, per_cluster=32, seed=0)
        neg_ids = hard.sample(rank=0, step=12)                 # [K * H], cluster by cluster
        log_q = hard.log_q()                                   # [K * H]
        mask = hard.foreign(hard.cluster_of(target_ids))       # [B, K * H]
    """

    def __init__(self, assignments: np.ndarray, per_cluster: int, seed: int) -> None:
        """assignments: [N] cluster id of every item (0..K-1, every cluster non-empty)."""
        assignments = np.asarray(assignments, np.int64)
        sizes = np.bincount(assignments)
        if (sizes == 0).any():
            raise ValueError(f"clusters {np.flatnonzero(sizes == 0).tolist()} have no items")
        self.assignments = torch.as_tensor(assignments)
        self.sizes = torch.as_tensor(sizes)
        self.starts = torch.as_tensor(np.concatenate([[0], np.cumsum(sizes)[:-1]]))
        # Every cluster's members, cluster by cluster (item ids ascending within one).
        self.members = torch.as_tensor(np.argsort(assignments, kind="stable"))
        self.num_items = len(assignments)
        self.num_clusters = len(sizes)
        self.per_cluster = per_cluster
        self.column_cluster = torch.arange(self.num_clusters).repeat_interleave(per_cluster)
        self.seed = seed

    def cluster_of(self, item_ids: torch.Tensor) -> torch.Tensor:
        return self.assignments.to(item_ids.device)[item_ids.long()]

    def sample(self, rank: int, step: int, device: torch.device | None = None) -> torch.Tensor:
        """[K * per_cluster] item ids: cluster 0's draws, then cluster 1's, ..."""
        # Integers only: a str in the tuple would hash differently in every process
        # (PYTHONHASHSEED), and the draws would not repeat from run to run.
        gen = torch.Generator().manual_seed(hash((self.seed, rank, step, 0xC1)) & 0x7FFF_FFFF)
        u = torch.rand((self.num_clusters, self.per_cluster), generator=gen)
        size = self.sizes.unsqueeze(1)
        offset = (u * size).long().clamp_max(size - 1)
        ids = self.members[self.starts.unsqueeze(1) + offset].reshape(-1)
        return ids.to(device) if device is not None else ids

    def log_q(self, device: torch.device | None = None) -> torch.Tensor:
        """[K * per_cluster] log probability that a column holds its item."""
        log_q = math.log(self.per_cluster) - torch.log(self.sizes.float())
        return log_q.repeat_interleave(self.per_cluster).to(device)

    def foreign(self, clusters: torch.Tensor) -> torch.Tensor:
        """[B] the rows' clusters -> [B, K * per_cluster]: True where a column is another
        cluster's draw."""
        return clusters.long().unsqueeze(1) != self.column_cluster.to(clusters.device).unsqueeze(0)
