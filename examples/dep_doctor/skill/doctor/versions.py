"""Versions and version ranges of PyPI (PEP 440) and npm (semver), as unions of intervals.

A requirement (``>=2.3,<3``, ``^1.2.5``) and an advisory's affected range
(``<2.31.0``) become the same thing, a set of versions written as a union of
intervals, so the two questions the doctor asks are set operations:

- is the pinned version inside the affected range? (`contains`)
- could the requirement resolve to an affected version? (`overlaps`)

What is deliberately left out, to stay small: npm's rule that a range only
matches a pre-release of the same ``major.minor.patch`` (pre-releases are
ordered like any version here), and PEP 440's rule that ``>V`` skips V's
post-releases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Ecosystem = Literal["pypi", "npm"]

__all__ = [
    "Ecosystem",
    "SpecError",
    "Version",
    "Interval",
    "VersionSet",
    "ANY",
    "parse_version",
    "parse_spec",
    "contains",
    "overlaps",
    "pinned_version",
]


class SpecError(ValueError):
    """A version or a range this module cannot read (or that names no registry version)."""


@dataclass(frozen=True, order=True)
class Version:
    """A version, ordered by `key` (the ordering of its ecosystem); `text` is what was written."""

    key: tuple[Any, ...]
    text: str = field(compare=False)

    def __str__(self) -> str:
        return self.text


def _release(parts: list[int]) -> tuple[int, ...]:
    """Trailing zeros dropped, so ``1.2`` and ``1.2.0`` are the same version."""
    while len(parts) > 1 and parts[-1] == 0:
        parts = parts[:-1]
    return tuple(parts)


# -- PEP 440 ------------------------------------------------------------------------------------

_PEP440 = re.compile(
    r"""v?(?:(?P<epoch>\d+)!)?(?P<release>\d+(?:\.\d+)*)
    (?:[-_.]?(?P<pre>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?P<pre_n>\d*))?
    (?:(?:[-_.]?(?:post|rev|r)[-_.]?(?P<post_n>\d*))|-(?P<post_implicit>\d+))?
    (?:[-_.]?dev[-_.]?(?P<dev_n>\d*))?
    (?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?""",
    re.VERBOSE | re.IGNORECASE,
)
_PRE_PHASE = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}


def _pep440(text: str) -> Version:
    match = _PEP440.fullmatch(text.strip())
    if match is None:
        raise SpecError(f"{text!r} is not a PEP 440 version")
    g = match.groupdict()
    release = _release([int(p) for p in g["release"].split(".")])
    has_post = g["post_n"] is not None or g["post_implicit"] is not None
    has_dev = g["dev_n"] is not None
    # The order PEP 440 gives: 1.0.dev0 < 1.0a1.dev0 < 1.0a1 < 1.0rc1 < 1.0 < 1.0.post1.dev0 < 1.0.post1
    if g["pre"]:
        pre: tuple[int, int] = (_PRE_PHASE[g["pre"].lower()], int(g["pre_n"] or 0))
    elif has_dev and not has_post:
        pre = (-1, 0)
    else:
        pre = (3, 0)
    post = (0, int(g["post_n"] or g["post_implicit"] or 0)) if has_post else (-1, 0)
    dev = (0, int(g["dev_n"] or 0)) if has_dev else (1, 0)
    return Version((int(g["epoch"] or 0), release, pre, post, dev), text.strip())


# -- semver -------------------------------------------------------------------------------------

_SEMVER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")


def _identifiers(pre: str) -> tuple[tuple[int, int, str], ...]:
    """Semver pre-release identifiers: numbers compare as numbers and sort before words."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))


def _semver(text: str) -> Version:
    match = _SEMVER.fullmatch(text.strip())
    if match is None:
        raise SpecError(f"{text!r} is not a semver version (major.minor.patch)")
    major, minor, patch, pre = match.groups()
    release = _release([int(major), int(minor), int(patch)])
    # A pre-release sorts before its release: (0, ids) < (1, ()).
    phase = (0, _identifiers(pre)) if pre else (1, ())
    return Version((release, phase), text.strip())


def parse_version(text: str, ecosystem: Ecosystem) -> Version:
    """One exact version of `ecosystem`, or `SpecError`."""
    return _pep440(text) if ecosystem == "pypi" else _semver(text)


# -- intervals ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """The versions between `low` and `high` (None: unbounded), each end inclusive or not."""

    low: Version | None = None
    low_inclusive: bool = True
    high: Version | None = None
    high_inclusive: bool = False

    def is_empty(self) -> bool:
        if self.low is None or self.high is None:
            return False
        if self.low == self.high:
            return not (self.low_inclusive and self.high_inclusive)
        return self.low > self.high

    def contains(self, version: Version) -> bool:
        if self.low is not None and (version < self.low or (version == self.low and not self.low_inclusive)):
            return False
        return not (
            self.high is not None
            and (version > self.high or (version == self.high and not self.high_inclusive))
        )

    def intersect(self, other: Interval) -> Interval:
        low, low_in = _tighter_low(self, other)
        high, high_in = _tighter_high(self, other)
        return Interval(low, low_in, high, high_in)


def _tighter_low(a: Interval, b: Interval) -> tuple[Version | None, bool]:
    if a.low is None:
        return b.low, b.low_inclusive
    if b.low is None or a.low > b.low:
        return a.low, a.low_inclusive
    if b.low > a.low:
        return b.low, b.low_inclusive
    return a.low, a.low_inclusive and b.low_inclusive


def _tighter_high(a: Interval, b: Interval) -> tuple[Version | None, bool]:
    if a.high is None:
        return b.high, b.high_inclusive
    if b.high is None or a.high < b.high:
        return a.high, a.high_inclusive
    if b.high < a.high:
        return b.high, b.high_inclusive
    return a.high, a.high_inclusive and b.high_inclusive


#: A set of versions: the union of its intervals (empty tuple: no version at all).
VersionSet = tuple[Interval, ...]
ANY: VersionSet = (Interval(),)


def _intersect(a: VersionSet, b: VersionSet) -> VersionSet:
    pieces = (x.intersect(y) for x in a for y in b)
    return tuple(p for p in pieces if not p.is_empty())


def _without(a: VersionSet, gap: Interval) -> VersionSet:
    """`a` minus the versions of `gap` (for ``!=``)."""
    below = Interval(None, True, gap.low, not gap.low_inclusive) if gap.low is not None else None
    above = Interval(gap.high, not gap.high_inclusive, None, False) if gap.high is not None else None
    keep = tuple(part for part in (below, above) if part is not None)
    return _intersect(a, keep)


def contains(versions: VersionSet, version: Version) -> bool:
    return any(part.contains(version) for part in versions)


def overlaps(a: VersionSet, b: VersionSet) -> bool:
    """Whether some version is in both sets."""
    return bool(_intersect(a, b))


def pinned_version(versions: VersionSet) -> Version | None:
    """The one version a set holds when it is a single exact pin (``==1.2.3``, npm ``1.2.3``)."""
    if len(versions) == 1:
        (only,) = versions
        if only.low is not None and only.low == only.high and only.low_inclusive and only.high_inclusive:
            return only.low
    return None


def _point(version: Version) -> Interval:
    return Interval(version, True, version, True)


# -- PEP 440 specifiers -------------------------------------------------------------------------

_CLAUSE = re.compile(r"(===|==|!=|~=|<=|>=|<|>)\s*(\S+)")


def _next_prefix(release: str) -> str:
    """``1.4`` -> ``1.5``: the first release after every ``1.4.*``."""
    parts = release.split(".")
    return ".".join([*parts[:-1], str(int(parts[-1]) + 1)])


def _prefix_interval(release: str) -> Interval:
    """``==1.4.*``: from the first possible 1.4 (1.4.dev0) up to, not including, the first 1.5."""
    try:
        low = _pep440(f"{release}.dev0")
        high = _pep440(f"{_next_prefix(release)}.dev0")
    except (SpecError, ValueError):
        raise SpecError(f"{release}.* is not a version prefix") from None
    return Interval(low, True, high, False)


def _pep440_clause(op: str, text: str) -> tuple[str, Interval]:
    """One clause as ("in", interval) or ("not", interval): ``!=`` takes versions away."""
    if text.endswith(".*"):
        if op not in ("==", "!="):
            raise SpecError(f"'{op}{text}': a .* prefix only goes with == or !=")
        return ("in" if op == "==" else "not"), _prefix_interval(text[:-2])
    version = _pep440(text)
    if op in ("==", "==="):
        return "in", _point(version)
    if op == "!=":
        return "not", _point(version)
    if op == ">=":
        return "in", Interval(version, True)
    if op == ">":
        return "in", Interval(version, False)
    if op == "<=":
        return "in", Interval(None, True, version, True)
    if op == "<":
        # "<2.0" leaves out 2.0's pre-releases too, unless 2.0 is itself a pre-release.
        final = version.key[2] == (3, 0) and version.key[4] == (1, 0)
        return "in", Interval(None, True, _pep440(f"{version.text}.dev0") if final else version, False)
    # "~=1.4.5" is ">=1.4.5, ==1.4.*"
    release = text.split("+")[0]
    numbers = re.match(r"v?(?:\d+!)?(\d+(?:\.\d+)*)", release)
    if numbers is None or "." not in numbers.group(1):
        raise SpecError(f"'~={text}' needs at least two release numbers")
    prefix = numbers.group(1).rsplit(".", 1)[0]
    return "in", Interval(version, True).intersect(_prefix_interval(prefix))


def parse_pep440_spec(spec: str) -> VersionSet:
    """``>=2.3, <3, !=2.5.1`` (an empty spec is every version)."""
    versions = ANY
    text = spec.strip().strip("()").strip()
    if not text:
        return versions
    for raw in text.split(","):
        match = _CLAUSE.fullmatch(raw.strip())
        if match is None:
            raise SpecError(f"cannot read the version clause {raw.strip()!r}")
        kind, interval = _pep440_clause(*match.groups())
        versions = _intersect(versions, (interval,)) if kind == "in" else _without(versions, interval)
    return versions


# -- npm ranges ---------------------------------------------------------------------------------

_PARTIAL = re.compile(
    r"v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*]))?(?:\.(?P<patch>\d+|[xX*]))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?"
)
_COMPARATOR = re.compile(r"(\^|~>?|>=|<=|>|<|=)?(.+)")


@dataclass(frozen=True)
class _Partial:
    """A semver that may stop early or hold x: ``1``, ``1.2``, ``1.x``, ``1.2.3-beta``."""

    numbers: tuple[int, ...]  # only the numbers given, before any x
    pre: str | None

    def version(self) -> Version:
        padded = [*self.numbers, 0, 0, 0][:3]
        text = ".".join(map(str, padded)) + (f"-{self.pre}" if self.pre else "")
        return _semver(text)

    def bumped(self, index: int) -> Version:
        """The first version after every version sharing the first ``index + 1`` numbers."""
        numbers = [*self.numbers, 0, 0, 0][:3]
        numbers[index] += 1
        numbers[index + 1 :] = [0] * (2 - index)
        return _semver(".".join(map(str, numbers)))


def _partial(text: str) -> _Partial:
    match = _PARTIAL.fullmatch(text)
    if match is None:
        raise SpecError(f"{text!r} is not a semver version or x-range")
    numbers: list[int] = []
    for part in (match["major"], match["minor"], match["patch"]):
        if part is None or not part.isdigit():
            break
        numbers.append(int(part))
    pre = match["pre"] if len(numbers) == 3 else None
    return _Partial(tuple(numbers), pre)


def _caret(p: _Partial) -> Interval:
    """``^1.2.3`` <2.0.0, ``^0.2.3`` <0.3.0, ``^0.0.3`` <0.0.4: the first non-zero number is fixed."""
    if not p.numbers:
        return Interval()
    padded = [*p.numbers, 0, 0][:3]
    fixed = next((i for i, n in enumerate(padded) if n != 0), len(p.numbers) - 1)
    fixed = min(fixed, len(p.numbers) - 1)
    return Interval(p.version(), True, p.bumped(fixed), False)


def _tilde(p: _Partial) -> Interval:
    """``~1.2.3`` and ``~1.2`` <1.3.0; ``~1`` <2.0.0."""
    if not p.numbers:
        return Interval()
    return Interval(p.version(), True, p.bumped(min(1, len(p.numbers) - 1)), False)


def _npm_comparator(text: str) -> Interval:
    match = _COMPARATOR.fullmatch(text)
    assert match is not None  # ".+" after an optional operator matches any non-empty text
    op, rest = match.group(1) or "", match.group(2)
    p = _partial(rest)
    if op == "^":
        return _caret(p)
    if op.startswith("~"):
        return _tilde(p)
    if not p.numbers:
        return Interval() if op in ("", "=", ">=", "<=") else Interval(None, True, _semver("0.0.0"), False)
    exact = len(p.numbers) == 3
    last = len(p.numbers) - 1
    if op in ("", "="):
        return _point(p.version()) if exact else Interval(p.version(), True, p.bumped(last), False)
    if op == ">=":
        return Interval(p.version(), True)
    if op == ">":
        return Interval(p.version(), False) if exact else Interval(p.bumped(last), True)
    if op == "<":
        return Interval(None, True, p.version(), False)
    # "<=": "<=1.2" means every 1.2.x too
    return Interval(None, True, p.version(), True) if exact else Interval(None, True, p.bumped(last), False)


def _npm_hyphen(low: str, high: str) -> Interval:
    start, end = _partial(low), _partial(high)
    if len(end.numbers) == 3:
        return Interval(start.version(), True, end.version(), True)
    if not end.numbers:
        return Interval(start.version(), True)
    return Interval(start.version(), True, end.bumped(len(end.numbers) - 1), False)


_NON_REGISTRY = re.compile(r"^(?:[a-z+]+:|\.{0,2}/|[\w.-]+/[\w.-]+)", re.IGNORECASE)


def parse_npm_range(spec: str) -> VersionSet:
    """``^1.2.5``, ``>=1.0.0 <2``, ``1.x || 2.1.0``, ``1.0.0 - 1.4``; git, file and alias specs: refused."""
    text = spec.strip()
    if _NON_REGISTRY.match(text):
        raise SpecError(f"{spec!r} is not a registry version range (a git, file, alias or tag spec)")
    union: list[Interval] = []
    for alternative in text.split("||"):
        part = re.sub(r"(\^|~>?|>=|<=|>|<|=)\s+", r"\1", alternative.strip())
        if part in ("", "*", "latest", "x", "X"):
            union.append(Interval())
            continue
        hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", part)
        if hyphen:
            union.append(_npm_hyphen(*hyphen.groups()))
            continue
        versions = ANY
        for comparator in part.split():
            versions = _intersect(versions, (_npm_comparator(comparator),))
        union.extend(versions)
    return tuple(i for i in union if not i.is_empty())


def parse_spec(spec: str, ecosystem: Ecosystem) -> VersionSet:
    """A requirement's or an advisory's range, in its ecosystem's syntax."""
    return parse_pep440_spec(spec) if ecosystem == "pypi" else parse_npm_range(spec)
