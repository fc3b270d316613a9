"""Incremental k-nearest-neighbour pairs for the GradPIE loss.

Keeps, for every point of a growing dataset, the indices of its ``k`` nearest
neighbours (Euclidean, in whatever coordinates the caller passes, usually
inputs normalised to the unit box), on the device of the first points added. Adding ``B`` points to ``N`` costs one
chunked ``cdist`` of ``B x (N + B)``: new points get their neighbours, and old
points whose neighbour lists a new point enters are updated in place.
"""

from __future__ import annotations

import torch


class KNNPairs:
    """Neighbour lists of a growing point set. ``neighbours``: ``n x k`` long tensor (-1 = none yet)."""

    def __init__(self, k: int, chunk_rows: int = 2048) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.chunk_rows = chunk_rows
        self.points = torch.empty(0, 0)
        self.neighbours = torch.empty(0, k, dtype=torch.long)
        self.distances = torch.empty(0, k)

    def __len__(self) -> int:
        return self.points.shape[0]

    def add(self, new: torch.Tensor) -> None:
        """Append ``b x d`` points and update every affected neighbour list."""
        new = new.detach().to(torch.float32)
        if new.ndim != 2 or new.shape[0] == 0:
            raise ValueError(f"expected a non-empty (b, d) tensor, got shape {tuple(new.shape)}")
        n_old, k = len(self), self.k
        if n_old == 0:
            self.points = new.clone()
            self.neighbours = self.neighbours.to(new.device)
            self.distances = self.distances.to(new.device)
        else:
            self.points = torch.cat([self.points, new.to(self.points.device)])
        dev = self.points.device
        n_all = len(self)
        pad_d = torch.full((new.shape[0], k), float("inf"), device=dev)
        pad_i = torch.full((new.shape[0], k), -1, dtype=torch.long, device=dev)
        self.distances = torch.cat([self.distances, pad_d])
        self.neighbours = torch.cat([self.neighbours, pad_i])
        # 1) neighbours of the new points among all points
        # 2) new points entering the lists of old points
        for lo in range(n_old, n_all, self.chunk_rows):
            hi = min(lo + self.chunk_rows, n_all)
            d = torch.cdist(self.points[lo:hi], self.points)  # (c, n_all)
            d[torch.arange(hi - lo, device=dev), torch.arange(lo, hi, device=dev)] = float("inf")  # no self pairs
            kk = min(k, n_all - 1)
            if kk > 0:
                vals, idx = torch.topk(d, kk, dim=1, largest=False)
                self.distances[lo:hi, :kk] = vals
                self.neighbours[lo:hi, :kk] = idx
            if n_old > 0:
                self._merge_into_old(d[:, :n_old].T, torch.arange(lo, hi, device=dev))

    def _merge_into_old(self, d_old_new: torch.Tensor, new_idx: torch.Tensor) -> None:
        """``d_old_new``: ``n_old x c`` distances from old points to a chunk of new points."""
        k = self.k
        n_old = d_old_new.shape[0]
        cand_d = torch.cat([self.distances[:n_old], d_old_new], dim=1)
        cand_i = torch.cat([self.neighbours[:n_old], new_idx.expand(n_old, -1)], dim=1)
        vals, pos = torch.topk(cand_d, k, dim=1, largest=False)
        self.distances[:n_old] = vals
        self.neighbours[:n_old] = torch.gather(cand_i, 1, pos)

    def valid_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(i, j)`` index tensors of every stored pair (each ``n_pairs``)."""
        mask = self.neighbours >= 0
        i = torch.arange(len(self), device=self.neighbours.device).unsqueeze(1).expand_as(self.neighbours)
        return i[mask], self.neighbours[mask]
