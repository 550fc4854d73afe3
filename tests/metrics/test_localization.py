"""Energy-based pointing game and pointing game: boxes (x1, y1 exclusive) and masks, by hand."""

from __future__ import annotations

import pytest
import torch

from camwidget.metrics import energy_pointing_game, pointing_game, region_masks


def test_boxes_are_exclusive_at_x1_y1_and_clipped() -> None:
    masks = region_masks([(1, 0, 3, 2)], 1, 4, 5)
    expected = torch.zeros(1, 4, 5, dtype=torch.bool)
    expected[0, 0:2, 1:3] = True  # columns 1, 2 and rows 0, 1: (3 - 1) x (2 - 0) = 4 pixels
    assert torch.equal(masks, expected)
    assert region_masks(torch.tensor([[-3, -3, 100, 100]]), 1, 4, 5).all()  # clipped to the map
    assert not region_masks([(2, 2, 2, 4)], 1, 4, 5).any()  # zero width: empty
    union = region_masks([[(0, 0, 1, 1), (4, 3, 5, 4)]], 1, 4, 5)
    assert union.sum() == 2 and union[0, 0, 0] and union[0, 3, 4]


def test_energy_pointing_game_by_hand() -> None:
    maps = torch.zeros(2, 4, 4)
    maps[0] = torch.arange(16.0).view(4, 4)  # total 120
    maps[1, 3, 3] = 1.0
    boxes = torch.tensor([[0, 0, 2, 2], [3, 3, 4, 4]])  # image 0: values 0, 1, 4, 5 -> 10 / 120
    energy = energy_pointing_game(maps, boxes)
    assert energy.tolist() == pytest.approx([10 / 120, 1.0])
    masks = region_masks(boxes, 2, 4, 4)
    assert torch.equal(energy_pointing_game(maps, masks), energy)
    assert energy_pointing_game(torch.zeros(1, 4, 4), [(0, 0, 4, 4)]).item() == 0  # no energy: 0, not NaN


def test_pointing_game_by_hand() -> None:
    maps = torch.zeros(3, 6, 6)
    maps[0, 1, 1] = 1  # inside the box
    maps[1, 5, 5] = 1  # outside
    boxes = [(0, 0, 3, 3), (0, 0, 3, 3), (0, 0, 3, 3)]  # image 2: an all-zero map, no evidence
    assert pointing_game(maps, boxes).tolist() == [True, False, False]
    maps[1, 5, 5], maps[1, 3, 3] = 0, 1  # one pixel past the exclusive edge
    assert pointing_game(maps, boxes).tolist() == [True, False, False]
    assert pointing_game(maps, boxes, tolerance=1).tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("maps", "regions", "message"),
    [
        (torch.rand(2, 4, 4), [(0, 0, 2, 2)], "regions for 1 images but 2 maps"),
        (torch.rand(1, 4, 4), torch.zeros(1, 4, 5, dtype=torch.bool), "shape"),
        (torch.rand(1, 4, 4), [(2, 0, 1, 2)], "x0 <= x1"),
        (torch.rand(1, 4, 4), [(0, 0, 2)], "4 numbers"),
        (torch.full((1, 4, 4), float("nan")), [(0, 0, 2, 2)], "NaN"),
        (-torch.rand(1, 4, 4), [(0, 0, 2, 2)], "non-negative"),
    ],
)
def test_bad_input(maps, regions, message) -> None:
    with pytest.raises(ValueError, match=message):
        energy_pointing_game(maps, regions)
