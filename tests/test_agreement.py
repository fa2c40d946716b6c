"""Explanation metrics against small hand-computed maps."""

import numpy as np
import pytest

from medkd_bench.explain import agreement as ag


def test_spearman_of_monotone_and_reversed_maps():
    a = np.arange(16, dtype=float).reshape(1, 4, 4)
    assert ag.spearman(a, a**2)[0] == pytest.approx(1.0)
    assert ag.spearman(a, -a)[0] == pytest.approx(-1.0)
    assert np.isnan(ag.spearman(a, np.zeros_like(a))[0])


def test_spearman_hand_computed():
    a = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    b = np.array([[[2.0, 1.0], [4.0, 3.0]]])
    # ranks a: 1 2 3 4, b: 2 1 4 3; d^2 = 1+1+1+1 = 4; rho = 1 - 6*4/(4*15) = 0.6
    assert ag.spearman(a, b)[0] == pytest.approx(0.6)


def test_top20_iou_hand_computed():
    a = np.zeros((1, 5, 2))
    b = np.zeros((1, 5, 2))
    a[0, 0, 0], a[0, 0, 1] = 1.0, 0.9  # top 20% of 10 pixels = 2 pixels
    b[0, 0, 0], b[0, 4, 1] = 1.0, 0.8
    # a's top: {(0,0), (0,1)}; b's top: {(0,0), (4,1)}; IoU = 1/3
    assert ag.top_fraction_iou(a, b)[0] == pytest.approx(1 / 3)
    assert ag.top_fraction_iou(a, a)[0] == 1.0
    assert np.isnan(ag.top_fraction_iou(a, np.ones_like(a))[0])


def test_pointing_games_and_chance():
    maps = np.array([
        [[0.0, 0.0], [1.0, 3.0]],  # 3 of 4 saliency units inside the mask (bottom-right pixel)
        [[5.0, 0.0], [0.0, 1.0]],  # max outside the mask; 1/6 inside
        [[1.0, 1.0], [1.0, 1.0]],  # empty mask below: skipped
    ])
    masks = np.array([
        [[False, False], [False, True]],
        [[False, False], [False, True]],
        [[False, False], [False, False]],
    ])
    epg = ag.energy_pointing_game(maps, masks)
    assert epg[:2] == pytest.approx([0.75, 1 / 6]) and np.isnan(epg[2])
    pg = ag.pointing_game(maps, masks)
    assert pg[:2].tolist() == [1.0, 0.0] and np.isnan(pg[2])
    chance = ag.mask_area_share(masks)
    assert chance[:2].tolist() == [0.25, 0.25] and np.isnan(chance[2])
    loc = ag.localisation(maps, masks)
    assert loc["energy_pointing_game"]["n"] == 2
    assert loc["energy_pointing_game"]["mean"] == pytest.approx((0.75 + 1 / 6) / 2)


def test_pointing_game_tied_maximum_hits_if_any_tied_pixel_is_inside():
    # Plateaued maximum (as upsampled CAMs have): the first tied pixel in raster order,
    # (0, 0), is outside the mask; Quantus's PointingGame counts a hit if ANY tied one is inside.
    maps = np.array([
        [[2.0, 0.0], [0.0, 2.0]],  # tied max at (0,0) and (1,1); (1,1) is inside -> hit
        [[2.0, 2.0], [0.0, 1.0]],  # tied max at (0,0) and (0,1); neither inside -> miss
    ])
    masks = np.array([
        [[False, False], [False, True]],
        [[False, False], [False, True]],
    ])
    assert ag.pointing_game(maps, masks).tolist() == [1.0, 0.0]


def test_summary_ci_is_seeded_and_brackets_the_mean():
    values = np.linspace(0, 1, 40)
    s1, s2 = ag.summarise(values, seed=3), ag.summarise(values, seed=3)
    assert s1 == s2
    lo, hi = s1["ci"]
    assert s1["mean"] == pytest.approx(0.5)
    assert lo < s1["mean"] < hi
    assert ag.summarise([np.nan, np.nan]) == {"mean": None, "ci": None, "n": 0}
    assert ag.format_summary(ag.summarise([0.5, 0.5])) == "0.50 [0.50, 0.50]"
    assert ag.format_summary(None) == "-"


def test_one_explained_image_has_no_confidence_interval():
    """Issue 30: one explained image printed a "CI" of [-0.80, -0.80]; a bootstrap of one value is no interval."""
    one = ag.summarise([-0.8])
    assert one == {"mean": -0.8, "ci": None, "n": 1}
    assert ag.format_summary(one) == "-0.80 (1 image, no CI)"
    two = ag.summarise([-0.8, 0.2])
    assert two["ci"] is not None and two["ci"][0] < two["ci"][1]
