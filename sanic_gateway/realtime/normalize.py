"""Normal form of a filter: a disjunction of conjunctions of (condition, negated) literals.

Equivalent filters written differently (operands swapped, `not not`, `bool` against `and`/`or`,
`in` against `or` of `equals`, repeated clauses, absorbed clauses) get the same form, so the same
room id. Conjunctions that cannot match (`a = 1 and a = 2`, `x and not x`, a value outside a range
on the same field...) are dropped; the form of a filter that never matches is `[[nothing]]`, that
of the empty filter `[[everything]]`.
"""

from __future__ import annotations

from itertools import product
from typing import Any

from . import conditions as C
from .standardize import FilterError, Node

Literal = tuple[C.Condition, bool]  # (condition, negated)
Conjunction = frozenset[Literal]


def count_conditions(node: Node) -> int:
    kind = node[0]
    if kind == "lit":
        return 1
    if kind == "not":
        return count_conditions(node[1])
    if kind in ("and", "or"):
        return sum(count_conditions(child) for child in node[1])
    return 0


def to_dnf(node: Node, max_terms: int) -> list[Conjunction]:
    """The simplified disjunction; [] means never, [frozenset()] means always."""
    terms = _dnf(node, False, max_terms)
    return _simplify(terms)


def _too_complex(count: int, limit: int) -> FilterError:
    return FilterError(
        f"Filter too complex: its normal form has more than {limit} conjunctions ({count})",
        "", "")


def _dnf(node: Node, negated: bool, max_terms: int) -> set[Conjunction]:
    kind = node[0]
    if kind == "lit":
        return {frozenset(((node[1], negated),))}
    if kind == "true" or kind == "false":
        return {frozenset()} if (kind == "true") != negated else set()
    if kind == "not":
        return _dnf(node[1], not negated, max_terms)
    conjunctive = (kind == "and") != negated
    parts = [_dnf(child, negated, max_terms) for child in node[1]]
    if not conjunctive:
        out: set[Conjunction] = set().union(*parts)
        if len(out) > max_terms:
            raise _too_complex(len(out), max_terms)
        return out
    result: set[Conjunction] = {frozenset()}
    for part in sorted(parts, key=len):
        combined = set()
        for left, right in product(result, part):
            term = left | right
            if _possible(term):
                combined.add(term)
        if len(combined) > max_terms:
            raise _too_complex(len(combined), max_terms)
        result = _absorb(combined)
        if not result:
            break
    return result


def _possible(term: Conjunction) -> bool:
    """False when the literals of one conjunction contradict each other."""
    if len(term) < 2:
        return True
    equal: dict[str, Any] = {}
    present: set[str] = set()
    absent: set[str] = set()
    ranges: dict[str, list[C.Condition]] = {}
    for cond, negated in term:
        if (cond, not negated) in term:
            return False
        keyword, field = cond.keyword, cond.field
        if negated:
            if keyword == "exists" and not cond.value[0]:
                absent.add(field)
            continue
        if keyword == "equals":
            if field in equal and equal[field] != cond.value:
                return False
            equal[field] = cond.value
            present.add(field)
        elif keyword == "range":
            ranges.setdefault(field, []).append(cond)
            present.add(field)
        elif keyword in ("regexp", "geospatial", "exists"):
            present.add(field)
    if present & absent:
        return False
    for field, conds in ranges.items():
        if field in equal:
            value = equal[field]
            if value.__class__ not in (int, float):
                return False
            if any(not (cond.low <= value <= cond.high) for cond in conds):
                return False
        if max(c.low for c in conds) > min(c.high for c in conds):
            return False
    return True


def _absorb(terms: set[Conjunction]) -> set[Conjunction]:
    """Drop every conjunction that contains another one (X or (X and Y) is X)."""
    if len(terms) < 2:
        return terms
    ordered = sorted(terms, key=len)
    kept: list[Conjunction] = []
    for term in ordered:
        if not any(other <= term for other in kept):
            kept.append(term)
    return set(kept)


# Conditions that can be false together with their negation (Koncorde's `not regexp` on a
# non-string value, geo conditions on an unreadable point): "x or not x" is not always true.
_THREE_VALUED = ("regexp", "geospatial")


def _simplify(terms: set[Conjunction]) -> list[Conjunction]:
    """Absorption, then merging (X and a) or (X and not a) into X until nothing changes."""
    terms = _absorb(terms)
    changed = True
    while changed and len(terms) > 1:
        changed = False
        for term in list(terms):
            if term not in terms:
                continue
            for lit in term:
                if lit[0].keyword in _THREE_VALUED:
                    continue
                flipped = (term - {lit}) | {(lit[0], not lit[1])}
                if flipped in terms:
                    terms.discard(term)
                    terms.discard(flipped)
                    terms.add(term - {lit})
                    terms = _absorb(terms)
                    changed = True
                    break
    return sorted(terms, key=_term_key)


def _term_key(term: Conjunction) -> list[tuple[str, bool]]:
    return sorted((cond.key, negated) for cond, negated in term)


def to_json(dnf: list[Conjunction]) -> list[list[dict[str, Any]]]:
    """Koncorde's shape: [[{<keyword>: {...}, "not": bool}, ...], ...]."""
    if not dnf:
        return [[{"nothing": True}]]
    out = []
    for term in dnf:
        if not term:
            return [[{"everything": True}]]
        out.append([dict(cond.json, **{"not": negated})
                    for cond, negated in sorted(term, key=lambda lit: (lit[0].key, lit[1]))])
    return out


def from_json(form: list[list[dict[str, Any]]]) -> list[Conjunction]:
    """The conjunctions of a normal form given in Koncorde's shape (as `to_json` writes it).

    For normal forms received from a trusted peer (another node); raises ValueError if the form
    is not one.
    """
    from . import geo
    from .standardize import compile_regexp

    terms: list[Conjunction] = []
    for conjunction in form:
        literals = []
        for item in conjunction:
            keyword = next((k for k in item if k != "not"), None)
            if keyword == "everything":
                return [frozenset()]
            if keyword == "nothing":
                return []
            body = item[keyword]
            if keyword == "equals":
                (field, value), = body.items()
                cond = C.equals(field, value)
            elif keyword == "exists":
                cond = C.exists(body["path"], bool(body["array"]), body["value"])
            elif keyword == "range":
                (field, bounds), = body.items()
                cond = C.range_(field, bounds)
            elif keyword == "regexp":
                (field, spec), = body.items()
                flags = spec.get("flags") or ""
                cond = C.regexp(field, spec["value"], flags, compile_regexp(spec["value"], flags))
            elif keyword == "geospatial":
                (kind, shape_body), = body.items()
                (field, d), = shape_body.items()
                if kind == "geoBoundingBox":
                    shape = geo.box(d["top"], d["left"], d["bottom"], d["right"])
                elif kind == "geoDistance":
                    shape = geo.circle(d["lat"], d["lon"], d["distance"])
                elif kind == "geoDistanceRange":
                    shape = geo.annulus(d["lat"], d["lon"], d["from"], d["to"])
                elif kind == "geoPolygon":
                    shape = geo.polygon([(p[0], p[1]) for p in d])
                else:
                    raise ValueError(f"unknown geospatial kind {kind!r}")
                cond = C.geospatial(kind, field, d, shape)
            else:
                raise ValueError(f"unknown keyword {keyword!r} in a normal form")
            literals.append((cond, bool(item.get("not", False))))
        terms.append(frozenset(literals))
    return sorted(terms, key=_term_key)
