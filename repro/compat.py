"""Make ``import torchvision`` work on a CPU-only torch. This is the only place that does it.

Why: every torchvision wheel on the package registry is a CUDA build. On the CPU torch its
compiled extension cannot load, torchvision swallows that error, and then
``torchvision._meta_registrations`` registers a fake kernel for ``torchvision::nms``, an
operator that was never defined, so the import fails with
``RuntimeError: operator torchvision::nms does not exist`` (../shared/ENVIRONMENT.md).

What: an import hook wraps torchvision's loader. If the normal import works (CUDA torch, or a
future CPU build) nothing changes and the real extension is used. Only on that exact error it
drops the partial ``torchvision*`` modules, declares the ``nms`` and ``qnms`` schemas in a
``torch.library.Library`` kept alive here, registers a pure-torch CPU NMS kernel, imports
again, and marks the extension as available. ``transforms``, ``models``, ``utils``
(``make_grid``/``save_image``), ``ops.nms`` and ``pytorch_fid`` then work;
``torchvision.io`` decoding does not (use PIL).

How to use it:
    * ``import repro.compat`` before ``torchvision`` or ``pytorch_fid`` (the library does this
      in the few modules that need them);
    * or ``python -m repro.compat install``, which ``make`` runs: it writes a one-line ``.pth``
      file into the environment so that a plain ``import torchvision`` works everywhere in it
      (notebooks included). ``python -m repro.compat uninstall`` removes it.

``MODE`` says what happened: ``"native"``, ``"cpu-shim"`` or ``None`` (not imported yet).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["MODE", "install", "nms_reference", "import_torchvision"]

MODE: str | None = None
_LIBRARY: Any = None  # the torch.library.Library holding the schemas; must stay alive
_ERROR = "torchvision::nms"
_PTH_NAME = "repro_torchvision_compat.pth"
_PTH_LINE = (
    "import importlib.util as _u; "
    "_u.find_spec('repro') and __import__('repro.compat').compat.install()\n"
)


def nms_reference(boxes: Any, scores: Any, iou_threshold: float) -> Any:
    """Greedy non-maximum suppression in pure torch (the CPU kernel of the shim).

    Args:
        boxes: ``(N, 4)`` boxes as ``(x1, y1, x2, y2)``.
        scores: ``(N,)`` scores.
        iou_threshold: boxes overlapping a kept box with IoU above this are discarded.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score.
    """
    import torch

    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for pos, i in enumerate(order.tolist()):
        if suppressed[pos]:
            continue
        keep.append(i)
        rest = order[pos + 1 :]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[pos + 1 :] |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


def _define_missing_ops() -> None:
    global _LIBRARY
    import torch

    if _LIBRARY is None:
        _LIBRARY = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            _LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARY.impl("nms", nms_reference, "CPU")


class _Loader(importlib.abc.Loader):
    """Runs torchvision's own loader; on the CUDA-only-extension error, shims and retries."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        global MODE
        try:
            self._loader.exec_module(module)
            MODE = "native"
            return
        except RuntimeError as err:
            if _ERROR not in str(err):
                raise
        for name in [m for m in sys.modules if m.startswith("torchvision.")]:
            del sys.modules[name]
        _define_missing_ops()
        self._loader.exec_module(module)
        module.extension._has_ops = lambda: True
        MODE = "cpu-shim"


class _Finder(importlib.abc.MetaPathFinder):
    """Meta-path finder that hands torchvision's spec to :class:`_Loader`."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "torchvision":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    """Install the import hook (idempotent, cheap: torch is not imported here)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def import_torchvision() -> ModuleType:
    """Install the hook and return the ``torchvision`` module.

    Returns:
        The imported module (native, or shimmed on a CPU-only torch).
    """
    install()
    import torchvision

    return torchvision


def _pth_path() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / _PTH_NAME


def _main(argv: list[str]) -> int:
    usage = "usage: python -m repro.compat {install|uninstall|status}"
    if len(argv) != 1 or argv[0] not in {"install", "uninstall", "status"}:
        sys.stderr.write(usage + "\n")
        return 2
    target = _pth_path()
    if argv[0] == "install":
        tmp = target.with_suffix(".tmp")
        tmp.write_text(_PTH_LINE, encoding="utf-8")
        tmp.replace(target)
        sys.stdout.write(f"wrote {target}\n")
    elif argv[0] == "uninstall":
        target.unlink(missing_ok=True)
        sys.stdout.write(f"removed {target}\n")
    else:
        import_torchvision()
        sys.stdout.write(f"torchvision import mode: {MODE}; hook file present: {target.exists()}\n")
    return 0


install()

if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
