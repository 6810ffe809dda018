"""Data-loading pieces of the training loop: the epoch-indexed sampler shared across ranks and the
patch dataset it indexes."""

from __future__ import annotations

import torch


class EpochSampler(torch.utils.data.Sampler[int]):
    """This rank's share of the epoch: sample ``i`` of ``n`` is global index ``epoch * n + i``,
    rank ``r`` of ``w`` takes ``i = r, r + w, ...`` (disjoint shards, none missed)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.n, self.rank, self.world = n, rank, world
        self.epoch = 0
        self.seen: list[int] = []  # every global index handed out (disjoint across ranks)

    def __iter__(self):
        indices = range(self.epoch * self.n + self.rank, (self.epoch + 1) * self.n, self.world)
        self.seen.extend(indices)
        return iter(indices)

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def worker_init(_: int) -> None:
    """Data-loading workers use one torch thread each."""
    torch.set_num_threads(1)


class IndexedPatches(torch.utils.data.Dataset):
    """Maps global sample index ``epoch * n + i`` onto the patch dataset's epoch and item."""

    def __init__(self, patches) -> None:
        self.patches = patches

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, index: int):
        epoch, i = divmod(int(index), len(self.patches))
        self.patches.epoch = epoch
        return self.patches[i]
