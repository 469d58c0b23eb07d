"""One rule for every benchmark's verdicts: a target judged on each repeat, never on a median alone.

On these shared cores the same code gave 1.2 % and 19 % fallbacks half an hour apart (bench/serve.md), so a median
of repeats that fall on both sides of a bound passes or fails by chance; such a target gets no verdict.
"""

from __future__ import annotations

from collections.abc import Sequence


def of_repeats(ok: Sequence[bool]) -> str:
    """``met`` when every repeat meets the target, ``not met`` when none does, ``no verdict`` when they fall on both
    sides, ``no data`` without a repeat."""
    if not ok:
        return "no data"
    return "met" if all(ok) else "not met" if not any(ok) else "no verdict"
