from __future__ import annotations

import pytest
import torch

from hil.knn import KNNPairs


@pytest.mark.parametrize("batches", [[1, 1, 1, 40], [7, 93, 300], [400]])
def test_incremental_pairs_equal_brute_force(batches):
    torch.manual_seed(0)
    x = torch.rand(sum(batches), 6)
    knn = KNNPairs(k=4, chunk_rows=32)
    for b in batches:
        knn.add(x[len(knn): len(knn) + b])
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    ref = torch.topk(d, 4, largest=False).indices
    assert torch.equal(torch.sort(ref, 1).values, torch.sort(knn.neighbours, 1).values)


def test_fewer_points_than_k_leaves_placeholders():
    knn = KNNPairs(k=3)
    knn.add(torch.rand(2, 2))
    assert (knn.neighbours[:, 0] >= 0).all() and (knn.neighbours[:, 1:] == -1).all()
    i, j = knn.valid_pairs()
    assert i.tolist() == [0, 1] and j.tolist() == [1, 0]
