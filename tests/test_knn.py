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


@pytest.mark.parametrize("value, message", [(0, "must be >= 1"), (2**70, "<= "), (2.5, "expected an integer")])
def test_a_surrogates_k_is_checked_before_pairs_are_allocated(value, message):
    from hil.config import parse
    from hil.errors import ConfigError
    from hil.surrogate import SurrogateConfig

    with pytest.raises(ConfigError) as info:
        parse(SurrogateConfig, {"k": value}, "estimator")
    assert str(info.value).startswith("estimator.k: ") and message in str(info.value), str(info.value)
