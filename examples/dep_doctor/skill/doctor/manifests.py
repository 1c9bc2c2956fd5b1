"""Reading dependency files: requirements files, pyproject.toml and package.json, from their text.

The parsers take text, not paths: reading stays with the tools, which are
confined to the project (see `tools`). Every parser returns the dependencies
it understood and, as notes, the lines it skipped and why, so nothing is
dropped silently.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from typing import Any

from .versions import Ecosystem

__all__ = [
    "Dependency",
    "Manifest",
    "manifest_kind",
    "parse_manifest",
    "parse_requirement",
    "parse_requirements_txt",
    "parse_pyproject",
    "parse_package_json",
    "normalize_name",
]


@dataclass(frozen=True)
class Dependency:
    """One declared dependency: what is asked for and where it was declared."""

    name: str
    ecosystem: Ecosystem
    spec: str  # the version requirement as written ("" for any version)
    source: str  # the file, relative to the project
    group: str = "main"  # "main", "dev", "optional:<extra>", "group:<name>"
    extras: tuple[str, ...] = ()
    marker: str = ""
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ((), "", None)}

    def shown(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"{self.name}{extras} {self.spec or '(any version)'}"


@dataclass
class Manifest:
    """What one file declares, and the notes on what was skipped."""

    path: str
    kind: str
    dependencies: list[Dependency] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "count": len(self.dependencies),
            "dependencies": [d.to_dict() for d in self.dependencies],
            "notes": self.notes,
        }


def normalize_name(name: str, ecosystem: Ecosystem) -> str:
    """PyPI names compare case- and separator-insensitively (PEP 503); npm names case-insensitively."""
    if ecosystem == "pypi":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name.lower()


def manifest_kind(filename: str) -> str | None:
    """Which parser reads a file, from its name alone; None for a file that is not a manifest."""
    lower = filename.lower()
    if lower == "pyproject.toml":
        return "pyproject"
    if lower == "package.json":
        return "package.json"
    if lower.endswith(".txt") and lower.startswith("requirements"):
        return "requirements"
    if lower.endswith(".txt") and lower.split(".")[0].endswith(("-requirements", "_requirements")):
        return "requirements"
    return None


# -- PEP 508 requirements -----------------------------------------------------------------------

_REQUIREMENT = re.compile(
    r"""\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*
    (?:\[(?P<extras>[^\]]*)\])?\s*
    (?:@\s*(?P<url>[^\s;]+)|(?P<spec>\(?\s*(?:(?:===|==|!=|~=|<=|>=|<|>)\s*[^,;\s()]+\s*,?\s*)*\)?))?\s*
    (?:;(?P<marker>.*))?""",
    re.VERBOSE,
)


def parse_requirement(text: str, source: str, group: str = "main", line: int | None = None) -> Dependency:
    """One PEP 508 requirement (``name[extras] >=1,<2 ; python_version >= "3.8"``), or ValueError."""
    match = _REQUIREMENT.fullmatch(text)
    if match is None:
        raise ValueError(f"cannot read the requirement {text.strip()!r}")
    extras = tuple(e.strip() for e in (match["extras"] or "").split(",") if e.strip())
    spec = f"@ {match['url']}" if match["url"] else re.sub(r"\s+", "", match["spec"] or "").strip("()")
    spec = spec.replace(",", ", ") if not match["url"] else spec
    return Dependency(
        name=match["name"],
        ecosystem="pypi",
        spec=spec,
        source=source,
        group=group,
        extras=extras,
        marker=(match["marker"] or "").strip(),
        line=line,
    )


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with comments removed and ``\\`` continuations joined, each with its first line number."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            out.append((start, joined))
    if pending.strip():
        out.append((start, pending.strip()))
    return out


def _is_bare_url(line: str) -> bool:
    """A URL or archive path with no ``name @`` in front: pip installs it, but it names no package."""
    return "://" in line.split(";")[0] and not re.match(r"[A-Za-z0-9._-]+\s*(\[[^\]]*\])?\s*@", line)


def parse_requirements_txt(text: str, source: str) -> Manifest:
    """A pip requirements file: requirements, with options, includes and editables noted and skipped."""
    manifest = Manifest(source, "requirements")
    for number, line in _logical_lines(text):
        line = re.sub(r"\s--hash[=\s]\S+", "", line).strip()
        if line.startswith(("-r", "--requirement", "-c", "--constraint")):
            manifest.notes.append(f"line {number}: includes {line.split(maxsplit=1)[-1]} (not followed)")
            continue
        if line.startswith(("-e", "--editable")):
            manifest.notes.append(f"line {number}: an editable install, skipped: {line}")
            continue
        if line.startswith("-"):
            manifest.notes.append(f"line {number}: a pip option, skipped: {line.split()[0]}")
            continue
        if _is_bare_url(line):
            manifest.notes.append(f"line {number}: a URL install that names no package, skipped")
            continue
        try:
            manifest.dependencies.append(parse_requirement(line, source, line=number))
        except ValueError as exc:
            manifest.notes.append(f"line {number}: {exc}")
    return manifest


# -- pyproject.toml -----------------------------------------------------------------------------


def _requirement_list(manifest: Manifest, values: Any, group: str, where: str) -> None:
    if not isinstance(values, list):
        manifest.notes.append(f"{where} is not a list; skipped")
        return
    for value in values:
        if not isinstance(value, str):
            continue  # e.g. {include-group = "..."} in [dependency-groups]
        try:
            manifest.dependencies.append(parse_requirement(value, manifest.path, group))
        except ValueError as exc:
            manifest.notes.append(f"{where}: {exc}")


def parse_pyproject(text: str, source: str) -> Manifest:
    """``[project] dependencies``, ``[project.optional-dependencies]`` and ``[dependency-groups]``."""
    manifest = Manifest(source, "pyproject")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        manifest.notes.append(f"not valid TOML: {exc}")
        return manifest
    project = data.get("project", {})
    if isinstance(project, dict):
        _requirement_list(manifest, project.get("dependencies", []), "main", "[project] dependencies")
        optional = project.get("optional-dependencies", {})
        for extra, values in optional.items() if isinstance(optional, dict) else ():
            _requirement_list(manifest, values, f"optional:{extra}", f"optional-dependencies.{extra}")
    groups = data.get("dependency-groups", {})
    for name, values in groups.items() if isinstance(groups, dict) else ():
        _requirement_list(manifest, values, f"group:{name}", f"dependency-groups.{name}")
    if "poetry" in data.get("tool", {}):
        manifest.notes.append("[tool.poetry] dependencies are not read (only the standard [project] tables)")
    return manifest


# -- package.json -------------------------------------------------------------------------------

_NPM_SECTIONS = {"dependencies": "main", "devDependencies": "dev", "optionalDependencies": "optional"}


def parse_package_json(text: str, source: str) -> Manifest:
    """``dependencies``, ``devDependencies`` and ``optionalDependencies`` of a package.json."""
    manifest = Manifest(source, "package.json")
    try:
        data = json.loads(text)
    except ValueError as exc:
        manifest.notes.append(f"not valid JSON: {exc}")
        return manifest
    if not isinstance(data, dict):
        manifest.notes.append("the top level is not an object")
        return manifest
    for section, group in _NPM_SECTIONS.items():
        entries = data.get(section, {})
        if not isinstance(entries, dict):
            manifest.notes.append(f"{section} is not an object; skipped")
            continue
        for name, spec in entries.items():
            manifest.dependencies.append(Dependency(name, "npm", str(spec).strip(), source, group))
    return manifest


_PARSERS = {
    "requirements": parse_requirements_txt,
    "pyproject": parse_pyproject,
    "package.json": parse_package_json,
}


def parse_manifest(text: str, path: str) -> Manifest:
    """Parse `text` as the kind of manifest its file name says; ValueError for any other file."""
    kind = manifest_kind(path.rsplit("/", 1)[-1])
    if kind is None:
        raise ValueError(f"{path} is not a dependency file (requirements*.txt, pyproject.toml, package.json)")
    return _PARSERS[kind](text, path)
