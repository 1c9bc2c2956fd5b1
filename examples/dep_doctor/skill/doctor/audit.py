"""Grading one dependency for security, license and maintenance against the offline tables.

The rules, as the report card states them:

- **Security**: every advisory whose affected range meets the requirement.
  A pinned version inside the range: F for critical or high, D for medium,
  C for low. A range that *could* resolve to an affected version (unpinned,
  or a lower bound below the fix): D for critical or high, C otherwise.
  No advisory meets it: A. A requirement that names no registry version
  (a URL or git spec): ``?``.
- **License**: the grade of the license's family in ``licenses.json``
  (permissive A, weak copyleft C, strong and network copyleft F, anything
  unlisted D). ``A OR B`` takes the better one, ``A AND B`` the worse.
- **Maintenance**: deprecated or unmaintained F; otherwise by the time since
  the last release, on the table's ``as_of`` date: within 1 year A, 2 years B,
  3 years C, 5 years D, older F; a package in maintenance mode gets C at best.
- **Overall** (per package): the worst grade of the three, or ``?`` when
  one of them is unknown.

A package missing from the table gets ``?`` for license and maintenance: the
report says so instead of pretending it is fine.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .manifests import Dependency, normalize_name
from .versions import Ecosystem, SpecError, VersionSet, contains, overlaps, parse_spec, pinned_version

__all__ = ["GRADES", "Table", "Grade", "Verdict", "check", "worst", "grade_points"]

GRADES = "ABCDF"
UNKNOWN = "?"


def grade_points(grade: str) -> int:
    """A=4 ... F=0, as on a school report."""
    return 4 - GRADES.index(grade)


def worst(grades: list[str]) -> str:
    """The worst known grade; ``?`` when none is known."""
    known = [g for g in grades if g in GRADES]
    return max(known, key=GRADES.index) if known else UNKNOWN


@dataclass(frozen=True)
class Advisory:
    id: str
    ecosystem: Ecosystem
    package: str
    severity: str
    summary: str
    affected: tuple[str, ...]
    fixed: str | None


@dataclass
class Table:
    """The offline data the doctor checks against (the JSON files in ``data/``)."""

    as_of: dt.date
    advisories: list[Advisory]
    packages: dict[str, dict[str, dict[str, Any]]]
    license_families: dict[str, str]  # license id -> family
    license_grades: dict[str, str]  # family -> grade
    license_why: dict[str, str]

    @classmethod
    def load(cls, folder: Path) -> Table:
        advisories = json.loads((folder / "advisories.json").read_text(encoding="utf-8"))
        packages = json.loads((folder / "packages.json").read_text(encoding="utf-8"))
        licenses = json.loads((folder / "licenses.json").read_text(encoding="utf-8"))
        return cls(
            as_of=dt.date.fromisoformat(packages["as_of"]),
            advisories=[
                Advisory(
                    a["id"],
                    a["ecosystem"],
                    normalize_name(a["package"], a["ecosystem"]),
                    a["severity"],
                    a["summary"],
                    tuple(a["affected"]),
                    a.get("fixed"),
                )
                for a in advisories["advisories"]
            ],
            packages=packages["packages"],
            license_families={
                spdx.lower(): family for family, ids in licenses["families"].items() for spdx in ids
            },
            license_grades=licenses["grades"],
            license_why=licenses["why"],
        )

    def facts(self, dependency: Dependency) -> dict[str, Any] | None:
        known = self.packages.get(dependency.ecosystem, {})
        return known.get(normalize_name(dependency.name, dependency.ecosystem))

    def advisories_for(self, dependency: Dependency) -> list[Advisory]:
        name = normalize_name(dependency.name, dependency.ecosystem)
        return [a for a in self.advisories if a.ecosystem == dependency.ecosystem and a.package == name]


@dataclass
class Grade:
    """One letter and the reasons behind it."""

    letter: str
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"grade": self.letter, "reasons": self.reasons}


@dataclass
class Verdict:
    """A dependency's report-card row."""

    dependency: Dependency
    security: Grade
    license: Grade
    maintenance: Grade

    @property
    def overall(self) -> str:
        """The worst of the three; ``?`` when any is unknown (an unknown is not a pass)."""
        letters = [self.security.letter, self.license.letter, self.maintenance.letter]
        return UNKNOWN if UNKNOWN in letters else worst(letters)

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": self.dependency.shown(),
            "ecosystem": self.dependency.ecosystem,
            "source": self.dependency.source,
            "group": self.dependency.group,
            "security": self.security.to_dict(),
            "license": self.license.to_dict(),
            "maintenance": self.maintenance.to_dict(),
            "overall": self.overall,
        }


# -- security -----------------------------------------------------------------------------------

_PINNED_GRADE = {"critical": "F", "high": "F", "medium": "D", "low": "C"}
_POSSIBLE_GRADE = {"critical": "D", "high": "D", "medium": "C", "low": "C"}


def _affected(advisory: Advisory) -> VersionSet:
    return tuple(i for spec in advisory.affected for i in parse_spec(spec, advisory.ecosystem))


def _fix_hint(advisory: Advisory) -> str:
    return f"fixed in {advisory.fixed}" if advisory.fixed else "no fixed version: replace the package"


def security_grade(dependency: Dependency, table: Table) -> Grade:
    try:
        wanted = parse_spec(dependency.spec, dependency.ecosystem)
    except SpecError as exc:
        return Grade(UNKNOWN, [f"cannot tell which version is used: {exc}"])
    pin = pinned_version(wanted)
    grade = Grade("A")
    for advisory in table.advisories_for(dependency):
        affected = _affected(advisory)
        what = f"{advisory.id} ({advisory.severity}): {advisory.summary}; {_fix_hint(advisory)}"
        if pin is not None and contains(affected, pin):
            letter = _PINNED_GRADE.get(advisory.severity, "D")
            grade.reasons.append(f"the pinned {pin} is affected by {what}")
        elif pin is None and overlaps(wanted, affected):
            letter = _POSSIBLE_GRADE.get(advisory.severity, "C")
            grade.reasons.append(f"'{dependency.spec or '*'}' allows versions affected by {what}")
        else:
            continue
        grade.letter = worst([grade.letter, letter])
    if grade.letter == "A":
        grade.reasons.append("no known advisory affects the versions it allows")
    return grade


# -- license ------------------------------------------------------------------------------------


def _license_family(expression: str, table: Table) -> str:
    """The family of an SPDX expression: the best of ``OR`` alternatives, the worst of ``AND`` terms."""

    def family_of(term: str) -> str:
        return table.license_families.get(term.strip().strip("()").lower(), "unlisted")

    def points(family: str) -> int:
        return grade_points(table.license_grades.get(family, "D"))

    alternatives = []
    for option in expression.split(" OR "):
        families = [family_of(term) for term in option.split(" AND ")]
        alternatives.append(min(families, key=points))
    return max(alternatives, key=points)


def license_grade(dependency: Dependency, table: Table) -> Grade:
    facts = table.facts(dependency)
    if facts is None or not facts.get("license"):
        return Grade(UNKNOWN, ["not in the offline table: check its license by hand"])
    family = _license_family(facts["license"], table)
    return Grade(table.license_grades.get(family, "D"), [f"{facts['license']}: {table.license_why[family]}"])


# -- maintenance --------------------------------------------------------------------------------

#: (years since the last release, grade): the first row the age fits.
_AGE_GRADES = ((1, "A"), (2, "B"), (3, "C"), (5, "D"))


def maintenance_grade(dependency: Dependency, table: Table) -> Grade:
    facts = table.facts(dependency)
    if facts is None:
        return Grade(UNKNOWN, ["not in the offline table: check its last release by hand"])
    status = facts.get("status", "active")
    released = dt.date.fromisoformat(facts["last_release"])
    years = (table.as_of - released).days / 365.25
    age = f"last release {facts.get('latest', '?')} on {released} ({years:.1f} years before {table.as_of})"
    if status in ("deprecated", "unmaintained", "archived"):
        return Grade("F", [f"{status}; {age}"])
    letter = next((g for limit, g in _AGE_GRADES if years <= limit), "F")
    reasons = [age]
    if status == "maintenance":
        letter = worst([letter, "C"])
        reasons.append("in maintenance mode: fixes only, no new development")
    return Grade(letter, reasons)


def check(dependency: Dependency, table: Table) -> Verdict:
    """The three grades of one dependency."""
    return Verdict(
        dependency,
        security_grade(dependency, table),
        license_grade(dependency, table),
        maintenance_grade(dependency, table),
    )
