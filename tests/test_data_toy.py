import math

import pytest
import torch

from repro.data.toy_square import draw, fit_shapes, make_pairs


def test_pairs_share_only_the_class():
    d = make_pairs(4000, torch.Generator().manual_seed(0))
    assert d.x["square"].shape == (4000, 1, 32, 32) and set(d.x["square"].unique().tolist()) == {
        0.0,
        1.0,
    }
    assert 0.45 < d.label.double().mean() < 0.55
    for m in ("square", "circle"):
        assert d.radius[m].min() >= 0.3 and d.radius[m].max() <= 0.9
    # sizes are independent across modalities, classes are shared
    r = torch.corrcoef(torch.stack([d.radius["square"], d.radius["circle"]]))[0, 1]
    assert abs(float(r)) < 0.05
    centre = d.x["circle"][:, 0, 15:17, 15:17].mean((1, 2))
    assert torch.equal(centre == 1, d.label == 1)  # full discs have a filled centre, rings do not


def test_shapes_have_the_right_area():
    r = torch.tensor([0.6], dtype=torch.float64)
    pixel = (2 / 31) ** 2
    disc = draw("circle", r, torch.tensor([True])).sum() * pixel
    diamond = draw("square", r, torch.tensor([True])).sum() * pixel
    ring = draw("circle", r, torch.tensor([False])).sum() * pixel
    assert abs(float(disc) - math.pi * 0.36) < 0.06
    assert abs(float(diamond) - 2 * 0.36) < 0.06
    assert abs(float(ring) - math.pi * ((0.725) ** 2 - (0.475) ** 2)) < 0.08


def test_generation_is_seeded():
    a = make_pairs(10, torch.Generator().manual_seed(3))
    b = make_pairs(10, torch.Generator().manual_seed(3))
    assert torch.equal(a.x["circle"], b.x["circle"]) and torch.equal(a.label, b.label)
    assert len(a.subset(slice(0, 4))) == 4


def test_fit_shapes_recognises_clean_shapes_and_flags_others():
    d = make_pairs(300, torch.Generator().manual_seed(1))
    for m in ("circle", "square"):
        fit = fit_shapes(d.x[m], m)
        assert torch.equal(fit.label, d.label)
        assert float(fit.iou.min()) > 0.95
        assert float((fit.radius - d.radius[m]).abs().max()) < 2 / 31
    assert bool(fit_shapes(d.x["circle"], "circle").realistic().all())
    full, empty = torch.tensor([True]), torch.tensor([False])
    r = torch.tensor([0.5])
    disc_and_ring = 0.5 * draw("circle", r, full) + 0.5 * draw("circle", r + 0.3, empty)
    assert not bool(fit_shapes(disc_and_ring, "circle").realistic()[0])
    halo = 0.5 * draw("circle", r, full) + 0.5 * draw("circle", r + 0.3, full)  # wide grey halo
    fit = fit_shapes(halo, "circle")
    assert float(fit.iou[0]) > 0.8 and not bool(fit.realistic()[0])  # caught by grey mass
    ghost = draw("circle", r, full)
    ghost[..., :8, :8] = 0.4  # a faint 64-pixel blob (a third of the disc) fails the 0.25 cut
    assert not bool(fit_shapes(ghost, "circle").realistic()[0])
    blurred = torch.nn.functional.avg_pool2d(d.x["circle"][:50], 3, 1, 1)  # soft edges stay clean
    assert bool(fit_shapes(blurred, "circle").realistic().all())


def test_errors():
    with pytest.raises(ValueError, match="unknown modality"):
        draw("triangle", torch.ones(1), torch.ones(1, dtype=torch.bool))
    with pytest.raises(ValueError, match="n must be"):
        make_pairs(0, torch.Generator())
    with pytest.raises(ValueError, match="r_min"):
        make_pairs(2, torch.Generator(), r_min=0.9, r_max=0.3)
    with pytest.raises(ValueError, match="increasing cuts"):
        fit_shapes(torch.zeros(1, 1, 32, 32), "circle", cuts=(0.7, 0.5, 0.2))
