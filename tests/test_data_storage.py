"""RowView: compact uint8 storage + row index, converted per batch, as a float32 tensor would be."""

import pytest
import torch

from repro.config import TrainConfig
from repro.data.mnist_svhn_text import ALPHABET, embedded_mnist_svhn_text, one_hot
from repro.data.storage import RowView, fingerprint
from repro.train import batches, fit


@pytest.fixture(scope="module")
def data():
    return embedded_mnist_svhn_text(
        "train", torch.Generator().manual_seed(0), n_images=40, data_multiplications=5
    )


def test_views_index_like_the_dense_tensors(data):
    dense = data.batch(slice(None))
    views = data.inputs()
    assert set(views) == {"mnist", "svhn", "text"}
    text = one_hot(dense["text"])
    for m, want in (("mnist", dense["mnist"]), ("svhn", dense["svhn"]), ("text", text)):
        view = views[m]
        assert len(view) == len(data) and view.shape == want.shape and view.dtype == torch.float32
        assert view.dim() == want.dim() and view.size(0) == len(data)
        for index in (
            slice(3, 17),
            torch.tensor([5, 0, 5, 199]),
            [2, 1],
            torch.arange(len(data)) % 3 == 0,
            7,
            torch.tensor(9),
        ):
            assert torch.equal(view[index], want[index]), (m, index)
        assert torch.equal(view[:4, 0], want[:4, 0]) and torch.equal(view[2, 0], want[2, 0])
        assert torch.equal(view.materialise(), want) and torch.equal(view.detach(), want)
    assert torch.equal(data.x["svhn"][[4, 2]], dense["svhn"][[4, 2]])
    assert torch.equal(data.x["text"], dense["text"])  # the text itself stays int64


def test_views_store_only_the_compact_data(data):
    views = data.inputs()
    stored = sum(
        t.numel() * t.element_size()
        for v in views.values()
        for t in (v.storage, v.rows)
        if t is not None
    )
    dense = sum(v.numel() * 4 for v in views.values())
    assert stored * 5 < dense  # 5 tuples per image here; 20 in MoPoE's pairing


def test_to_moves_storage_and_refuses_other_dtypes(data):
    view = data.inputs()["svhn"]
    assert view.to("cpu") is view and view.cpu() is view and view.to(torch.float32) is view
    with pytest.raises(ValueError, match="float32"):
        view.to(dtype=torch.float64)
    with pytest.raises(ValueError, match="rows must lie"):
        RowView(torch.zeros(3, 2, dtype=torch.uint8), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="classes"):
        RowView(torch.zeros(3, 2), kind="one_hot", classes=4)
    with pytest.raises(ValueError, match="kind"):
        RowView(torch.zeros(3, 2), kind="dense")
    assert "RowView(shape=(200, 3, 32, 32)" in repr(view)


def test_batches_and_fit_give_the_same_bits_as_dense_data(data):
    views = data.inputs()
    dense = {m: v[:] for m, v in views.items()}
    a = list(batches(views, 64, torch.Generator().manual_seed(1)))
    b = list(batches(dense, 64, torch.Generator().manual_seed(1)))
    assert len(a) == len(b) == 4
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(x[m], y[m]) for m in y)

    def train(values):
        torch.manual_seed(0)
        model = torch.nn.Linear(28 * 28 + 8 * len(ALPHABET), 1).float()

        def bound(batch):
            flat = torch.cat([batch["mnist"].flatten(1), batch["text"].flatten(1)], 1)
            return -model(flat).pow(2).sum(-1)

        cfg = TrainConfig(epochs=2, batch_size=32)
        history = fit(model, bound, values, cfg, generator=torch.Generator().manual_seed(2))
        return history.train, model.weight.detach().clone()

    (h1, w1), (h2, w2) = train(views), train(dense)
    assert h1 == h2 and torch.equal(w1, w2)


def test_fingerprint_reads_storage_and_tells_contents_apart(data):
    views = data.inputs()
    again = data.inputs()
    assert views["svhn"].fingerprint() == again["svhn"].fingerprint()
    assert fingerprint(views["svhn"], data.label) == fingerprint(again["svhn"], data.label)
    sub = data.subset(torch.arange(10)).inputs()
    assert sub["svhn"].fingerprint() != views["svhn"].fingerprint()
    assert fingerprint(torch.zeros(2)) != fingerprint(torch.zeros(3))
