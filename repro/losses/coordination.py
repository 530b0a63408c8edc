"""Coordination-based objectives: JMVAE-KL, MVTCAE, CRMVAE, TELBO and the conditional ELBO.

Pure functions returning a bound per sample, shape ``(B,)``, to maximise (see
:mod:`repro.losses`). They take already-computed per-modality log-likelihoods and the
distributions whose KLs they need; no function here samples. Notation (papers/coordination.md
§2): ``X = (x_1, ..., x_M)``, ``q(z|X)`` the joint posterior, ``q_m = q(z|x_m)``, ``p(z)`` the
prior.

**Arguments shared by every function.**

* ``log_px``: ``{m: log p(x_m|z)}`` at ``z ~ q(z|X)``, each ``(B,)`` or ``(K, B)`` (leading sample
  dims are averaged, the Monte-Carlo estimate of ``E_{q(z|X)}[log p(x_m|z)]``). The keys are
  the model's modalities; their sorted order is the column order of ``mask``.
* ``z``: samples of ``q(z|X)``, needed only for a KL without closed form (then estimated at
  ``z``, see :func:`repro.losses.bounds.kl`).
* ``mask``: optional ``(B, M)`` presence mask (bool or 0/1). An absent modality's terms drop
  out: its reconstructions, its KL to ``q_m`` and its conditional bound. Each sample needs at
  least one present modality.
* ``n_modalities``: the ``M`` in the weights of MVTCAE and CRMVAE. ``None`` (default) counts the
  present modalities of each sample, so that a masked bound equals the unmasked bound of the
  sub-model of present modalities (and the bound hierarchy of coordination.md §3 holds per
  sample); an integer fixes it, as MultiVae does (it always divides by the total ``M``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor
from torch.distributions import Distribution

from repro.losses.bounds import kl

__all__ = [
    "RECON_WEIGHTS",
    "conditional_elbo",
    "jmvae_kl",
    "mvtcae",
    "crmvae",
    "telbo",
]

RECON_WEIGHTS = ("docstring", "half")  # CRMVAE reconstruction weight forms


def _mean_leading(value: Tensor) -> Tensor:
    """Average ``(..., B)`` over the leading sample dims: ``(B,)``."""
    return value.reshape(-1, value.shape[-1]).mean(0)


def _presence(
    log_px: Mapping[str, Tensor], mask: Tensor | None
) -> tuple[list[str], dict[str, Tensor], Tensor]:
    """Modalities, ``(B,)`` 0/1 presence weights per modality and the ``(B,)`` present count.

    Raises:
        ValueError: for no modality, a mask of the wrong shape, or a sample with none present.
    """
    names = sorted(log_px)
    if not names:
        raise ValueError("log_px must name at least one modality")
    first = log_px[names[0]]
    batch = first.shape[-1]
    if mask is None:
        ones = torch.ones(batch, dtype=first.dtype, device=first.device)
        return names, {m: ones for m in names}, ones * len(names)
    if mask.dim() != 2 or tuple(mask.shape) != (batch, len(names)):
        raise ValueError(
            f"mask must be (B, M) = ({batch}, {len(names)}) with columns {names}, "
            f"got {tuple(mask.shape)}"
        )
    weights = mask.to(dtype=first.dtype, device=first.device)
    count = weights.sum(-1)
    if bool((count <= 0).any()):
        empty = torch.nonzero(count <= 0).flatten().tolist()
        raise ValueError(f"samples {empty} have no present modality; drop them from the batch")
    return names, {m: weights[:, i] for i, m in enumerate(names)}, count


def _masked(value: Tensor, present: Tensor) -> Tensor:
    """``value`` where present, exactly 0 elsewhere (no NaN leaks from placeholder inputs)."""
    return torch.where(present > 0, value, torch.zeros_like(value))


def _check_keys(what: str, given: Mapping[str, object], names: list[str]) -> None:
    if sorted(given) != names:
        raise ValueError(f"{what} names {sorted(given)}, but log_px names {names}")


def _count(n_modalities: int | None, count: Tensor) -> Tensor:
    if n_modalities is None:
        return count
    if n_modalities < 1 or n_modalities < int(count.max()):
        raise ValueError(
            f"n_modalities={n_modalities} must be >= 1 and >= the present modalities "
            f"({int(count.max())})"
        )
    return torch.full_like(count, float(n_modalities))


def _reconstruction(log_px: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
    """``sum_m present_m E[log p(x_m|z)]``, ``(B,)``."""
    return sum(_masked(_mean_leading(log_px[m]), present[m]) for m in sorted(log_px))


def _kl_to_unimodal(
    qz_x: Distribution,
    qz_xm: Mapping[str, Distribution],
    present: Mapping[str, Tensor],
    z: Tensor | None,
) -> Tensor:
    """``sum_m present_m KL(q(z|X) || q_m)``, ``(B,)``."""
    return sum(_masked(kl(qz_x, qz_xm[m], z), present[m]) for m in sorted(qz_xm))


def conditional_elbo(
    log_px: Mapping[str, Tensor],
    qz_x: Distribution,
    qz_xm: Distribution,
    m: str,
    z: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    r"""Conditional ELBO ``L_{\m|m} = E_{q(z|X)}[log p(X_{\m}|z)] - KL(q(z|X) || q_m)``.

    With ``q_m`` in the role of the prior ``p(z|x_m)`` this lower-bounds
    ``log p~(X_{\m}|x_m) = log E_{q_m}[p(X_{\m}|z)]``; with ``q_m = p(z|x_m)`` and
    ``q(z|X) = p(z|X)`` exact it equals ``log p(X_{\m}|x_m) = log p(X) - log p(x_m)``.

    Args:
        log_px: ``{j: log p(x_j|z)}`` at ``z ~ q(z|X)``, each ``(B,)`` or ``(K, B)``; must
            include ``m`` (its term is not used).
        qz_x: ``q(z|X)``, batch ``(B,)``, event ``(D,)``.
        qz_xm: ``q_m = q(z|x_m)``, batch ``(B,)``, event ``(D,)``.
        m: the conditioning modality.
        z: ``(B, D)`` or ``(K, B, D)`` samples of ``q(z|X)`` (for a KL without closed form).
        mask: optional ``(B, M)`` presence mask (columns in ``sorted(log_px)`` order); absent
            modalities of ``X_{\m}`` drop out, and the bound is 0 where ``m`` itself is absent.

    Returns:
        ``(B,)`` bounds.

    Raises:
        ValueError: when ``m`` is not a key of ``log_px``, or for an invalid mask.

    References:
        Suzuki & Matsuo, "Mitigating the limitations of multimodal VAEs with coordination-based
        approach", OpenReview Rn8u4MYgeNJ (ICLR 2023 submission); the conditional bound of
        papers/coordination.md §3 [derived].
    """
    names, present, _ = _presence(log_px, mask)
    if m not in names:
        raise ValueError(f"conditioning modality m={m!r} is not one of {names}")
    others = {j: present[j] for j in names if j != m}
    rec = sum((_masked(_mean_leading(log_px[j]), w) for j, w in others.items()), 0.0)
    value = rec - kl(qz_x, qz_xm, z)
    return _masked(value, present[m])


def jmvae_kl(
    log_px: Mapping[str, Tensor],
    qz_x: Distribution,
    qz_xm: Mapping[str, Distribution],
    pz: Distribution,
    alpha: float = 0.1,
    beta: float = 1.0,
    z: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """JMVAE-KL: ``E[log p(X|z)] - beta KL(q(z|X) || p) - alpha sum_m KL(q(z|X) || q_m)``.

    With ``beta = 1`` and ``alpha >= 0`` it is at most the multimodal ELBO; for ``M = 2`` it
    decomposes as ``(1-alpha) L(X) + alpha (L_{2|1} + L_{1|2}) - alpha KL(q(z|X) || p)``
    (papers/coordination.md §3).

    Args:
        log_px: ``{m: log p(x_m|z)}`` at ``z ~ q(z|X)``, each ``(B,)`` or ``(K, B)``.
        qz_x: the joint encoder's ``q(z|X)``, batch ``(B,)``, event ``(D,)``.
        qz_xm: ``{m: q(z|x_m)}``, the same modalities as ``log_px``.
        pz: prior ``p(z)``.
        alpha: weight of the KLs to the unimodal posteriors (MultiVae default 0.1).
        beta: weight of the KL to the prior (MultiVae add-on, default 1; the paper has none).
        z: samples of ``q(z|X)`` (for KLs without closed form).
        mask: optional ``(B, M)`` presence mask; absent modalities' terms drop out.

    Returns:
        ``(B,)`` bounds.

    Raises:
        ValueError: for mismatched modalities, a negative ``alpha`` or an invalid mask.

    References:
        Suzuki, Nakayama & Matsuo, "Joint Multimodal Learning with Deep Generative Models",
        arXiv 1611.01891, the JMVAE-kl objective (equation number not checked); MultiVae
        ``models/jmvae/jmvae_model.py:134-184``.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got alpha={alpha}")
    names, present, _ = _presence(log_px, mask)
    _check_keys("qz_xm", qz_xm, names)
    rec = _reconstruction(log_px, present)
    return rec - beta * kl(qz_x, pz, z) - alpha * _kl_to_unimodal(qz_x, qz_xm, present, z)


def mvtcae(
    log_px: Mapping[str, Tensor],
    qz_x: Distribution,
    qz_xm: Mapping[str, Distribution],
    pz: Distribution,
    alpha: float = 0.1,
    beta: float = 2.5,
    z: Tensor | None = None,
    mask: Tensor | None = None,
    n_modalities: int | None = None,
) -> Tensor:
    r"""MVTCAE: ``(M-a)/M E[log p(X|z)] - beta[(1-a) KL(q||p) + a/M sum_m KL(q||q_m)]``.

    With ``beta = 1`` it is the convex combination
    ``(1-a) L(X) + a/M sum_m L_{\m|m}(X)`` of valid bounds (papers/coordination.md §3).

    Args:
        log_px: ``{m: log p(x_m|z)}`` at ``z ~ q(z|X)``, each ``(B,)`` or ``(K, B)``.
        qz_x: ``q(z|X)``, the PoE of the unimodal posteriors without a prior expert.
        qz_xm: ``{m: q(z|x_m)}``, the same modalities as ``log_px``.
        pz: prior ``p(z)``.
        alpha: total-correlation ratio ``a`` in ``[0, 1]`` (MultiVae default 0.1).
        beta: weight of all KLs (MultiVae default 2.5).
        z: samples of ``q(z|X)`` (for KLs without closed form).
        mask: optional ``(B, M)`` presence mask; absent modalities' terms drop out.
        n_modalities: ``M``; ``None`` counts the present modalities per sample (see module
            docstring), an integer fixes it (MultiVae: the total number of modalities).

    Returns:
        ``(B,)`` bounds.

    Raises:
        ValueError: for ``alpha`` outside ``[0, 1]``, mismatched modalities, an invalid mask or
            ``n_modalities``.

    References:
        Hwang, Kim, Lee & Kim, "Multi-View Representation Learning via Total Correlation
        Objective", NeurIPS 2021, the final objective (equation number not checked);
        MultiVae ``models/mvtcae/__init__.py`` (equation) and
        ``models/mvtcae/mvtcae_model.py:42-108``.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got alpha={alpha}")
    names, present, count = _presence(log_px, mask)
    _check_keys("qz_xm", qz_xm, names)
    big_m = _count(n_modalities, count)
    rec = _reconstruction(log_px, present)
    kl_uni = _kl_to_unimodal(qz_x, qz_xm, present, z)
    divergence = (1 - alpha) * kl(qz_x, pz, z) + alpha / big_m * kl_uni
    return (big_m - alpha) / big_m * rec - beta * divergence


def crmvae(
    log_px: Mapping[str, Tensor],
    log_px_uni: Mapping[str, Tensor],
    qz_x: Distribution,
    qz_xm: Mapping[str, Distribution],
    pz: Distribution,
    beta: float = 2.5,
    recon_weight: str = "docstring",
    z: Tensor | None = None,
    mask: Tensor | None = None,
    n_modalities: int | None = None,
) -> Tensor:
    """CRMVAE: MVTCAE's terms plus unimodal self-reconstructions, weights ``pi = 1/(M+1)``.

    ``c sum_m (E_{q(z|X)} log p(x_m|z) + E_{q_m} log p(x_m|z))
    - beta pi (KL(q(z|X) || p) + sum_m KL(q(z|X) || q_m))``, with ``c = pi`` (``"docstring"``,
    the MultiVae docstring) or ``c = pi / 2`` (``"half"``, what ``crmvae_model.py`` computes
    since commit 63c22eb, 2025-03-04). With ``beta = 1`` the docstring form is the docstring's
    equation.

    Args:
        log_px: ``{m: log p(x_m|z)}`` at ``z ~ q(z|X)``, each ``(B,)`` or ``(K, B)``.
        log_px_uni: ``{m: log p(x_m|z_m)}`` at ``z_m ~ q(z|x_m)`` (self-reconstruction), same
            keys and shapes.
        qz_x: ``q(z|X)``, the PoE of the unimodal posteriors without a prior expert.
        qz_xm: ``{m: q(z|x_m)}``.
        pz: prior ``p(z)``.
        beta: weight of the KLs (MultiVae default 2.5).
        recon_weight: ``"docstring"`` (default) or ``"half"``.
        z: samples of ``q(z|X)`` (for KLs without closed form).
        mask: optional ``(B, M)`` presence mask; absent modalities' terms drop out.
        n_modalities: ``M``; ``None`` counts the present modalities per sample, an integer
            fixes it (MultiVae: the total number of modalities).

    Returns:
        ``(B,)`` bounds.

    Raises:
        ValueError: for an unknown ``recon_weight``, mismatched modalities, an invalid mask or
            ``n_modalities``.

    References:
        Suzuki & Matsuo, "Mitigating the limitations of multimodal VAEs with coordination-based
        approach", OpenReview Rn8u4MYgeNJ; MultiVae ``models/crmvae/__init__.py:1-20``
        (docstring) and ``models/crmvae/crmvae_model.py:44-113`` (code, factor 1/2 at l. 106).
    """
    if recon_weight not in RECON_WEIGHTS:
        raise ValueError(f"recon_weight must be one of {RECON_WEIGHTS}, got {recon_weight!r}")
    names, present, count = _presence(log_px, mask)
    _check_keys("log_px_uni", log_px_uni, names)
    _check_keys("qz_xm", qz_xm, names)
    pi = 1.0 / (_count(n_modalities, count) + 1)
    c = pi if recon_weight == "docstring" else pi / 2
    rec = _reconstruction(log_px, present) + _reconstruction(log_px_uni, present)
    divergence = kl(qz_x, pz, z) + _kl_to_unimodal(qz_x, qz_xm, present, z)
    return c * rec - beta * pi * divergence


def telbo(
    log_px: Mapping[str, Tensor],
    log_px_uni: Mapping[str, Tensor],
    qz_x: Distribution,
    qz_xm: Mapping[str, Distribution],
    pz: Distribution,
    z: Tensor | None = None,
    z_uni: Mapping[str, Tensor] | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Triple ELBO: ``L(X) + sum_m [E_{q_m} log p(x_m|z) - KL(q_m || p)]``.

    Args:
        log_px: ``{m: log p(x_m|z)}`` at ``z ~ q(z|X)``, each ``(B,)`` or ``(K, B)``.
        log_px_uni: ``{m: log p(x_m|z_m)}`` at ``z_m ~ q(z|x_m)``, same keys.
        qz_x: the joint encoder's ``q(z|X)``.
        qz_xm: ``{m: q(z|x_m)}``.
        pz: prior ``p(z)``.
        z: samples of ``q(z|X)`` (for a KL without closed form).
        z_uni: ``{m: z_m}`` samples of ``q_m`` (for a KL without closed form).
        mask: optional ``(B, M)`` presence mask; absent modalities' terms drop out.

    Returns:
        ``(B,)`` bounds (a sum of ``1 + M`` ELBOs; each lower-bounds its evidence).

    Raises:
        ValueError: for mismatched modalities or an invalid mask.

    References:
        Vedantam, Fischer, Huang & Murphy, "Generative Models of Visually Grounded
        Imagination", arXiv 1705.10762, the triple ELBO (equation number not checked);
        MultiVae ``models/telbo/telbo_model.py`` (trained in two stages there).
    """
    names, present, _ = _presence(log_px, mask)
    _check_keys("log_px_uni", log_px_uni, names)
    _check_keys("qz_xm", qz_xm, names)
    z_uni = dict(z_uni or {})
    joint = _reconstruction(log_px, present) - kl(qz_x, pz, z)
    unimodal = sum(
        _masked(_mean_leading(log_px_uni[m]) - kl(qz_xm[m], pz, z_uni.get(m)), present[m])
        for m in names
    )
    return joint + unimodal
