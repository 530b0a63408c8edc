import subprocess
import sys

import pytest
import torch

from repro.compat import nms_reference

SCRIPT = """
import torch, {prelude}
import torchvision, pytorch_fid.inception
from torchvision.ops import nms
from torchvision.utils import make_grid
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.]])
kept = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
print(kept, make_grid(torch.rand(4, 1, 8, 8)).shape[0])
import repro.compat as c; print(c.MODE)
"""


@pytest.mark.parametrize("prelude", ["repro.compat", "os"])
def test_torchvision_and_pytorch_fid_import(prelude):
    # "os": a plain `import torchvision`, which works when the environment has the hook file
    # (`python -m repro.compat install`, run by `make`).
    from repro.compat import _pth_path

    if prelude == "os" and not _pth_path().exists():
        pytest.skip("hook file not installed in this environment")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(prelude=prelude)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0] == "[0, 2] 3"
    # the shim only replaces the extension where it cannot load
    expected = "native" if torch.version.cuda else "cpu-shim"
    assert lines[1] in (expected, "native")


def test_nms_reference_matches_bruteforce():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=g) * 20], 1)
    scores = torch.rand(60, generator=g)

    def iou(a, b):
        w = (min(a[2], b[2]) - max(a[0], b[0])).clamp(min=0)
        h = (min(a[3], b[3]) - max(a[1], b[1])).clamp(min=0)
        inter = w * h
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        return inter / (area(a) + area(b) - inter)

    keep = []
    for i in sorted(range(60), key=lambda k: -scores[k]):
        if all(iou(boxes[i], boxes[j]) <= 0.3 for j in keep):
            keep.append(i)
    assert nms_reference(boxes, scores, 0.3).tolist() == keep
    assert nms_reference(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_compat_cli_rejects_bad_usage():
    proc = subprocess.run(
        [sys.executable, "-m", "repro.compat", "frobnicate"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "usage" in proc.stderr
