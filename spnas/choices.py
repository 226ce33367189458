"""Candidate sets of a searchable layer and how the superkernel encodes them
(Stamoulis et al., 2019, Sec. 3.2-3.4, Eq. 1-4 and 11-12, generalised).

The paper's layer chooses among four MBConv candidates (k3_e3, k3_e6, k5_e3,
k5_e6) and, where allowed, skip, with three thresholded group-Lasso indicators:
``d5x5`` (the 5x5 shell), ``d100c`` (the upper, e6 half of the channels) and
``d50c`` (the lower half: the layer itself). A space may offer any non-empty
subset of the four. Its :class:`Encoding` keeps the paper's kernel
``d50c * (w'_e3 + d100c * w'_e6)`` with ``w' = core + d5x5 * shell`` and writes
the *effective* ``d5x5`` and ``d100c`` as functions of at most two *raw*
indicators ``a`` (threshold ``t5x5``) and ``b`` (threshold ``t100c``):

* ``a`` exists when both kernel sizes are members; then ``d5x5 = a``, else
  ``d5x5`` is fixed to the one kernel's value.
* per kernel size the set allows one or both expansions; ``b`` exists where
  some kernel allows both, and ``d100c = (1 - a) * row_3 + a * row_5`` with
  ``row_k`` = ``b``, 1 or 0 (both expansions, only e6, only e3).

So an indicator the set does not need is fixed, and a pair the set moves
together is one group: for {k3_e3, k5_e6} ``d100c = a``, and ``a`` is decided on
the norm of the 5x5 shell over all channels together with the upper half of the
channels (what k5_e6 holds beyond k3_e3), with one threshold. Every hard state
decodes to a member. With all four members this is the paper's encoding exactly.

The cost of a layer (runtime, MACs, parameters) from its indicators is
:func:`superkernel_cost`. With all four members it is Eq. 11-12 (the paper's
single k3/k5 ratio, or one ratio per expansion with ``exact_k3``); with fewer it
is the multilinear interpolation of the members' entries over the raw
indicators, exact for every member under hard indicators. A skipped layer costs
its ``skip`` entry (a projection skip's 1x1 conv) or 0 (an identity).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from collections.abc import Sequence

from spnas.errors import UserError

# Candidate operations of a searchable layer, in the column order of the paper's
# Pixel 1 table (k3e3, k3e6, k5e3, k5e6); ``skip`` drops the whole layer.
CANDIDATES = ("k3_e3", "k3_e6", "k5_e3", "k5_e6")
SKIP = "skip"
# The four quadrants of the superkernel: 3x3 core / 5x5 shell x lower (e3) / upper half.
QUADRANTS = ("core_e3", "core_e6", "shell_e3", "shell_e6")


class SpaceError(UserError):
    """A search space, a block string or a layer choice is malformed (names what)."""


def parse_choice(choice: str) -> tuple[int, int]:
    """``'k5_e3'`` -> ``(5, 3)``."""
    m = re.fullmatch(r"k(\d+)_e(\d+)", choice) if isinstance(choice, str) else None
    if not m:
        raise SpaceError(f"Malformed layer choice {choice!r}.")
    return int(m.group(1)), int(m.group(2))


def check_candidates(members, where: str = "candidates") -> tuple[str, ...]:
    """A candidate set as a tuple in :data:`CANDIDATES` order.

    Raises:
      SpaceError: naming ``where`` and the value, when it is not a non-empty
        subset of :data:`CANDIDATES` without repeats.
    """
    if isinstance(members, str):
        members = [m for m in members.split(",") if m]
    if not isinstance(members, Sequence) or not members:
        raise SpaceError(f"{where}: expected a non-empty subset of {CANDIDATES}, got {members!r}.")
    unknown = [m for m in members if m not in CANDIDATES]
    if unknown:
        raise SpaceError(f"{where}: {unknown[0]!r} is not a candidate; expected a non-empty "
                         f"subset of {CANDIDATES}.")
    if len(set(members)) != len(members):
        raise SpaceError(f"{where}: repeated candidates in {list(members)!r}.")
    return tuple(c for c in CANDIDATES if c in members)


def _quadrants(choice: str) -> frozenset[str]:
    k, e = parse_choice(choice)
    halves = ("e3", "e6") if e == 6 else ("e3",)
    parts = ("core", "shell") if k == 5 else ("core",)
    return frozenset(f"{p}_{h}" for p in parts for h in halves)


@dataclasses.dataclass(frozen=True)
class Encoding:
    """How one candidate set sits in the superkernel's indicators (see the module doc).

    Attributes:
      members: the candidate set, in :data:`CANDIDATES` order.
      free_a: the raw indicator ``a`` (threshold ``t5x5``) exists.
      free_b: the raw indicator ``b`` (threshold ``t100c``) exists.
      d5_fixed: ``d5x5`` where ``a`` does not exist (0 or 1).
      rows: per kernel size (3, 5) what ``d100c`` is there: ``"b"``, 1.0, 0.0, or
        None where that kernel is no member.
      a_group: the quadrants ``a``'s norm is taken over (:data:`QUADRANTS`).
    """

    members: tuple[str, ...]
    free_a: bool
    free_b: bool
    d5_fixed: float
    rows: tuple
    a_group: tuple[str, ...]

    @property
    def full(self) -> bool:
        """All four candidates: the paper's encoding."""
        return self.members == CANDIDATES

    def effective(self, a, b):
        """``(d5x5, d100c)`` from the raw ``a`` and ``b`` (floats or tensors; an absent
        raw indicator is ignored)."""

        def value(row):
            return b if row == "b" else row

        r3, r5 = self.rows
        if not self.free_a:
            return self.d5_fixed, value(r5 if self.d5_fixed else r3)
        if r3 == r5:  # the expansion does not depend on the kernel
            return a, value(r3)
        return a, (1.0 - a) * value(r3) + a * value(r5)

    def choice(self, a: float, b: float, s: float = 1.0) -> str:
        """The member (or skip) hard raw indicators encode."""
        if s < 0.5:
            return SKIP
        d5, d100 = self.effective(1.0 if a > 0.5 else 0.0, 1.0 if b > 0.5 else 0.0)
        return f"k{5 if d5 > 0.5 else 3}_e{6 if d100 > 0.5 else 3}"

    def raw(self, choice: str) -> tuple[float, float, float]:
        """Raw ``(a, b, s)`` that decode to ``choice`` (a member or skip)."""
        if choice == SKIP:
            return 0.0, 0.0, 0.0
        if choice not in self.members:
            raise SpaceError(f"{choice!r} is not a member of the candidate set {self.members}.")
        for a, b in itertools.product((0.0, 1.0), repeat=2):
            if self.choice(a, b) == choice:
                return a, b, 1.0
        raise AssertionError(choice)  # every member is reached (tests/test_candidate_sets.py)

    def corners(self) -> list[tuple[dict[str, float], str]]:
        """Every hard state of the free raw indicators and the member it decodes to."""
        names = [n for n, free in (("a", self.free_a), ("b", self.free_b)) if free]
        out = []
        for bits in itertools.product((0.0, 1.0), repeat=len(names)):
            state = dict(zip(names, bits))
            out.append((state, self.choice(state.get("a", 0.0), state.get("b", 0.0))))
        return out


@functools.cache
def encoding(members: tuple[str, ...] = CANDIDATES) -> Encoding:
    """The :class:`Encoding` of a candidate set (checked with :func:`check_candidates`)."""
    members = check_candidates(members)
    allowed = {k: {e for kk, e in map(parse_choice, members) if kk == k} for k in (3, 5)}

    def row(k: int):
        return {frozenset(): None, frozenset({3}): 0.0, frozenset({6}): 1.0,
                frozenset({3, 6}): "b"}[frozenset(allowed[k])]

    rows = (row(3), row(5))
    free_a = all(rows[i] is not None for i in (0, 1))
    free_b = "b" in rows
    d5_fixed = 0.0 if free_a else (1.0 if rows[0] is None else 0.0)
    if not free_a:
        a_group: tuple[str, ...] = ()
    elif free_b:
        a_group = ("shell_e3", "shell_e6")  # the paper's: the 5x5 shell over all channels
    else:  # one member per kernel size: what the k5 member holds beyond the k3 one
        k3 = next(m for m in members if m.startswith("k3"))
        k5 = next(m for m in members if m.startswith("k5"))
        a_group = tuple(q for q in QUADRANTS if q in _quadrants(k5) - _quadrants(k3))
    return Encoding(members, free_a, free_b, d5_fixed, rows, a_group)


def choice_from_decisions(d5x5: float, d100c: float, d50c: float,
                          members: Sequence[str] = CANDIDATES) -> str:
    """The choice three hard raw indicators encode (reference-facts.md, "Decode").

    ``d50c = 0`` drops the layer (skip); otherwise the candidate set's
    :meth:`Encoding.choice`: for all four candidates, kernel 5 if ``d5x5`` else 3
    and expansion 6 if ``d100c`` else 3. The authors' encoder swapped e3 and e6
    for ``3x3-6`` and ``5x5-3`` (issue #8 of their release); this spells the
    choice straight from the decisions.
    """
    return encoding(tuple(members)).choice(d5x5, d100c, d50c)


def decisions_from_choice(choice: str, members: Sequence[str] = CANDIDATES
                          ) -> tuple[float, float, float]:
    """Inverse of :func:`choice_from_decisions`: raw ``(d5x5, d100c, d50c)`` as floats."""
    if choice != SKIP:
        parse_choice(choice)
        if choice not in members:
            raise SpaceError(f"{choice!r} is not a searchable choice; expected one of "
                             f"{tuple(members)}.")
    return encoding(tuple(members)).raw(choice)


def superkernel_cost(entries: dict[str, float], d5x5, d100c, d50c, *,
                     members: Sequence[str] = CANDIDATES, exact_k3: bool = False):
    """A searchable layer's cost (runtime, MACs, parameters) from its raw indicators.

    With all four candidates, Eq. 11-12: ``C = C_ch * ratio + C_ch * (1 - ratio) *
    d5x5`` with ``C_ch = d50c * (C_k5e3 + d100c * (C_k5e6 - C_k5e3))``. The paper's
    ratio is ``C_k3e6 / C_k5e6`` for both expansions, so the k3e3 entry is
    approximated by ``C_k5e3 * ratio`` and not used; ``exact_k3`` gives one ratio
    per expansion, ``r3 + d100c * (r6 - r3)`` with ``r3 = C_k3e3 / C_k5e3``, so
    that hard indicators give every candidate's own entry.

    With fewer candidates, ``d50c`` times the multilinear interpolation of the
    members' entries over the free raw indicators (exact for every member).

    Either way a skipped layer costs ``entries["skip"]`` where the table has one
    (a projection skip), else 0: ``+ (1 - d50c) * C_skip``. Only ``+`` and ``*``
    touch the indicators, so they may be Python floats (a prediction) or tensors
    (the differentiable cost the search minimises).
    """
    enc = encoding(tuple(members))
    if enc.full:
        ratio = entries["k3_e6"] / entries["k5_e6"]
        if exact_k3:
            r3 = entries["k3_e3"] / entries["k5_e3"]
            ratio = r3 + d100c * (ratio - r3)
        c_ch = d50c * (entries["k5_e3"] + d100c * (entries["k5_e6"] - entries["k5_e3"]))
        cost = c_ch * ratio + c_ch * (1.0 - ratio) * d5x5
    else:
        raw = {"a": d5x5, "b": d100c}
        mixed = 0.0
        for state, member in enc.corners():
            weight = 1.0
            for name, bit in state.items():
                weight = weight * (raw[name] if bit else 1.0 - raw[name])
            mixed = mixed + weight * entries[member]
        cost = d50c * mixed
    skip = entries.get(SKIP)
    if skip:
        cost = cost + (1.0 - d50c) * skip
    return cost


def layer_runtime(entries: dict[str, float], d5x5, d100c, d50c,
                  members: Sequence[str] = CANDIDATES):
    """Eq. 11-12 as the paper writes it: the runtime of one searchable layer from its
    three indicators (:func:`superkernel_cost` with the paper's single k3/k5 ratio)."""
    return superkernel_cost(entries, d5x5, d100c, d50c, members=members)
