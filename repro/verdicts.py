"""One vocabulary for the verdicts on the papers' claims, in summaries, sidecars and the README.

Every claim a figure checks ends in one of four words:

* :data:`HOLDS`: the difference goes the paper's way and is beyond noise (2 standard errors);
* :data:`TIE`: the difference is within noise, or the seeds disagree;
* :data:`FAILS`: the difference goes against the paper and is beyond noise;
* :data:`NOT_TESTABLE`: the numbers cannot decide (e.g. every model at chance level).

A claim checked at several points (several values of beta, say) is reported by :func:`tally`
as the count of each verdict, e.g. ``"holds at 1, tie at 2, does not hold at 0 of 3 betas"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from torch import Tensor

__all__ = [
    "HOLDS",
    "TIE",
    "FAILS",
    "NOT_TESTABLE",
    "VERDICTS",
    "compare",
    "paired",
    "combine",
    "tally",
]

HOLDS = "holds"
TIE = "tie"
FAILS = "does not hold"
NOT_TESTABLE = "not testable"
VERDICTS = (HOLDS, TIE, FAILS, NOT_TESTABLE)


def compare(holds: bool, tie: bool = False, testable: bool = True) -> str:
    """The verdict on one comparison.

    Args:
        holds: the difference goes the claim's way.
        tie: the difference is within noise.
        testable: ``False`` when the numbers cannot decide.

    Returns:
        One of :data:`VERDICTS`.
    """
    if not testable:
        return NOT_TESTABLE
    if tie:
        return TIE
    return HOLDS if holds else FAILS


def paired(diffs: Tensor, z: float = 2.0) -> str:
    """Verdict on per-sample paired differences (positive: the claim's way).

    Args:
        diffs: ``(N,)`` differences.
        z: standard errors a mean difference must exceed.

    Returns:
        :data:`HOLDS` or :data:`FAILS` beyond ``z`` standard errors, else :data:`TIE`.
    """
    n = diffs.numel()
    se = float(diffs.std()) / math.sqrt(n) if n > 1 else float("inf")
    mean = float(diffs.mean())
    return compare(mean > 0, abs(mean) <= z * se)


def combine(verdicts: Sequence[str]) -> str:
    """One verdict from several seeds: the common verdict if they agree, else a tie.

    Args:
        verdicts: one verdict per seed.

    Returns:
        One of :data:`VERDICTS`.

    Raises:
        ValueError: for an empty sequence or a word outside :data:`VERDICTS`.
    """
    unknown = sorted(set(verdicts) - set(VERDICTS))
    if not verdicts or unknown:
        raise ValueError(f"need verdicts from {VERDICTS}, got {list(verdicts)}")
    if NOT_TESTABLE in verdicts:
        return NOT_TESTABLE
    return verdicts[0] if len(set(verdicts)) == 1 else TIE


def tally(verdicts: Iterable[str], over: str) -> str:
    """A claim checked at several points, as counts: ``"holds at i, tie at j, ... of n <over>"``.

    Args:
        verdicts: one verdict per point.
        over: what the points are, e.g. ``"betas"``.

    Returns:
        The counts in the order of :data:`VERDICTS` (not testable only when it occurs).
    """
    verdicts = list(verdicts)
    parts = [f"{word} at {verdicts.count(word)}" for word in (HOLDS, TIE, FAILS)]
    if NOT_TESTABLE in verdicts:
        parts.append(f"{NOT_TESTABLE} at {verdicts.count(NOT_TESTABLE)}")
    return f"{', '.join(parts)} of {len(verdicts)} {over}"
