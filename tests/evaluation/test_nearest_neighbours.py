"""Nearest training neighbours (memorisation audit) against brute force."""

from __future__ import annotations

import torch
from PIL import Image

from hwaksan.evaluation import nearest_neighbours, neighbour_summary, save_neighbour_grid


def test_matches_brute_force_with_small_blocks():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(57, 1, 6, 5, generator=g) * 2 - 1
    fake = torch.rand(23, 1, 6, 5, generator=g) * 2 - 1
    dist, idx = nearest_neighbours(fake, train, k=3, batch_size=4)
    brute = torch.stack(
        [((f.double() - train.double()) ** 2).sum(dim=(1, 2, 3)).sqrt() for f in fake]
    )  # (23, 57)
    expected, expected_idx = brute.sort(dim=1)
    torch.testing.assert_close(dist, expected[:, :3], rtol=1e-9, atol=1e-9)
    assert torch.equal(idx, expected_idx[:, :3])


def test_a_copied_training_image_is_found_at_distance_zero(tmp_path):
    g = torch.Generator().manual_seed(1)
    train = torch.rand(40, 1, 8, 8, generator=g) * 2 - 1
    fake = torch.rand(10, 1, 8, 8, generator=g) * 2 - 1
    fake[3] = train[17]
    dist, idx = nearest_neighbours(fake, train)
    assert int(idx[3, 0]) == 17 and float(dist[3, 0]) < 1e-6
    summary = neighbour_summary(dist[:, 0], nearest_neighbours(train[:10] + 0.1, train[10:])[0][:, 0])
    assert summary["min"] < 1e-6 and summary["n"] == 10 and summary["heldout_n"] == 10
    path = save_neighbour_grid(fake, train, dist, idx, tmp_path / "nn.png", n=6, per_row=4, scale=1)
    with Image.open(path) as im:  # 2 blocks of 2 rows x 4 images of 8 px with 2 px gaps
        assert im.size == (4 * 10 + 2, 4 * 10 + 2)
