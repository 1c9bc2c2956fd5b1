"""The report card: one row per checked dependency, the reasons behind every grade below A,
and the project's overall grade, all computed from the tools' verdicts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .audit import GRADES, UNKNOWN, Verdict, grade_points

__all__ = ["ProjectGrade", "project_grade", "render_card"]

#: The overall grade cannot be better than this when some package has an F in security.
SECURITY_F_CAP = "D"
#: ... nor better than this when some package has an F elsewhere (license, maintenance).
OTHER_F_CAP = "C"


@dataclass(frozen=True)
class ProjectGrade:
    letter: str
    why: str


def project_grade(verdicts: Sequence[Verdict]) -> ProjectGrade:
    """The mean of the packages' overall grades (A=4 ... F=0, rounded half up), capped by any F.

    A single critical hole should not be averaged away by twenty healthy
    packages: an F in security caps the project at D, any other F at C.
    """
    known = [v.overall for v in verdicts if v.overall in GRADES]
    if not known:
        return ProjectGrade(UNKNOWN, "no package could be graded")
    mean = sum(grade_points(g) for g in known) / len(known)
    letter = GRADES[4 - math.floor(mean + 0.5)]
    why = f"mean of {len(known)} graded packages {mean:.2f} ({letter})"
    security_f = sum(1 for v in verdicts if v.security.letter == "F")
    other_f = sum(1 for v in verdicts if "F" in (v.license.letter, v.maintenance.letter))
    if security_f and GRADES.index(letter) < GRADES.index(SECURITY_F_CAP):
        letter = SECURITY_F_CAP
        why += f", capped at {letter}: {_packages(security_f)} with an F in security"
    elif other_f and GRADES.index(letter) < GRADES.index(OTHER_F_CAP):
        letter = OTHER_F_CAP
        why += f", capped at {letter}: {_packages(other_f)} with an F in license or maintenance"
    ungraded = len(verdicts) - len(known)
    if ungraded:
        why += f"; {_packages(ungraded)} not graded (missing from the tables: review by hand)"
    return ProjectGrade(letter, why)


def _packages(count: int) -> str:
    return "1 package" if count == 1 else f"{count} packages"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _label(verdict: Verdict) -> str:
    d = verdict.dependency
    return d.name + (f"[{','.join(d.extras)}]" if d.extras else "")


def render_card(project: str, as_of: str, verdicts: Sequence[Verdict], unchecked: Sequence[str] = ()) -> str:
    """The card as text: the grade table, why each grade below A was given, and the overall grade."""
    lines = [f"Dependency report card: {project} (offline tables of {as_of})", ""]
    if not verdicts:
        lines.append("No dependency was checked.")
    else:
        header = ["package", "requirement", "file", "group", "security", "license", "maintenance", "overall"]
        rows = [header] + [
            [
                _label(v),
                v.dependency.spec or "*",
                v.dependency.source,
                v.dependency.group,
                v.security.letter,
                v.license.letter,
                v.maintenance.letter,
                v.overall,
            ]
            for v in verdicts
        ]
        lines += _table(rows)
        lines += ["", "Why:"]
        for v in verdicts:
            if v.overall == "A":
                continue
            lines.append(f"  {_label(v)} {v.dependency.spec or '*'} ({v.dependency.source})")
            for aspect, grade in (
                ("security", v.security),
                ("license", v.license),
                ("maintenance", v.maintenance),
            ):
                if grade.letter != "A":
                    lines += [f"    {aspect} {grade.letter}: {reason}" for reason in grade.reasons]
    if unchecked:
        lines += ["", f"Not checked: {', '.join(unchecked)}"]
    overall = project_grade(verdicts)
    lines += ["", f"Overall grade: {overall.letter} ({overall.why})"]
    return "\n".join(lines)
