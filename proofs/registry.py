"""All proof obligations, by claim family, and how to run a selection of them."""

from __future__ import annotations

from cpa_theory.errors import CPAInputError

from . import bn_algebra, breakpoints, conv_bn, depth, window_criterion
from .obligation import Obligation, ProofResult

__all__ = ["all_obligations", "select", "run", "PROVABLE_CLAIMS"]

_FAMILIES = (bn_algebra, window_criterion, breakpoints, depth, conv_bn)

#: the THEORY claims that have a symbolic derivation here
PROVABLE_CLAIMS = ("C1", "C2", "C3", "C4", "C8", "C9", "C10a", "C10b", "C10c")


def all_obligations() -> list[Obligation]:
    return [o for fam in _FAMILIES for o in fam.OBLIGATIONS]


def _matches(name: str, claim: str) -> bool:
    """``C3`` selects C3 and C3-…; ``C10`` selects C10a, C10b, C10c and their variants."""
    return name == claim or name.startswith(claim + "-") or (name[:len(claim)] == claim and
                                                             name[len(claim):len(claim) + 1].isalpha())


def select(claims=None) -> list[Obligation]:
    """Obligations of the given claim ids (``"C3"`` selects C3 and its variants and negative controls)."""
    obs = all_obligations()
    if not claims:
        return obs
    chosen = [o for o in obs if any(_matches(o.claim, c) for c in claims)]
    unknown = [c for c in claims if not any(_matches(o.claim, c) for o in obs)]
    if unknown:
        raise CPAInputError(f"no symbolic obligation for {unknown}; choose from {', '.join(PROVABLE_CLAIMS)} "
                            "(C5-C7 are checked numerically by 'cpa-theory reproduce').")
    return chosen


def run(claims=None, seed: int = 0) -> list[ProofResult]:
    """Check the selected obligations in order."""
    return [o.check(seed=seed) for o in select(claims)]
