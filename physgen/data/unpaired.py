"""Unpaired items from two domains, for unpaired translation (CycleGAN): no pair survives.

When the two domains are two views of the same samples (a coarse and a fine solve of the same
inputs, say), index ``i`` of one domain is the partner of index ``i`` of the other. Removing
the pairing by shuffling alone leaves pairs together by chance; here the sample indices are
split by construction: a seeded permutation gives domain A one half of the indices and domain
B the other, so no item, and no batch however drawn, ever holds the same sample index from
both domains. Domains of different sources (``shared=False``) use all of their samples, each
in its own seeded order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["UnpairedDataset"]


class UnpairedDataset(Dataset):
    """Items ``(b, a)``: a domain-B sample and an unrelated domain-A sample.

    The order ``(x, cond) = (b, a)`` is what ``physgen.training.fit`` passes to a model's
    losses, so a translation model A → B sees domain A as its condition.

    Args:
        a: domain-A items (tensors; plain items, not ``(x, cond)`` pairs).
        b: domain-B items.
        shared: the domains index the same samples (same length required): split the indices
            into disjoint halves.
        seed: seed of the permutations.

    Attributes:
        index_a, index_b: the sample indices item ``i`` reads from each domain.
    """

    def __init__(
        self,
        a: Dataset | Sequence[Tensor],
        b: Dataset | Sequence[Tensor],
        *,
        shared: bool = True,
        seed: int = 0,
    ) -> None:
        n_a, n_b = len(a), len(b)  # type: ignore[arg-type]
        rng = np.random.default_rng(seed)
        if shared:
            if n_a != n_b:
                raise ValueError(
                    f"UnpairedDataset: shared=True needs domains of equal length (the same "
                    f"samples), got {n_a} and {n_b}"
                )
            if n_a < 2:
                raise ValueError("UnpairedDataset: need at least 2 shared samples to split")
            order = rng.permutation(n_a)
            half = n_a // 2
            self.index_a, self.index_b = np.sort(order[:half]), order[half : 2 * half]
        else:
            n = min(n_a, n_b)
            self.index_a, self.index_b = rng.permutation(n_a)[:n], rng.permutation(n_b)[:n]
        self.a, self.b = a, b

    def __len__(self) -> int:
        return len(self.index_a)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        a, b = self.a[int(self.index_a[i])], self.b[int(self.index_b[i])]
        if isinstance(a, tuple) or isinstance(b, tuple):
            raise ValueError(
                "UnpairedDataset: the domains must yield plain items, not (x, cond) pairs"
            )
        return b, a
