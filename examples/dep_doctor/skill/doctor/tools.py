"""The doctor's tools, its guard and its preset: what the model calls, and what the card is made of.

Every file the tools read goes through `looplet.workspace.Workspace`,
the coding tools' confinement: relative paths only, no ``..``, no absolute
path, no ``~``, no symbolic link leading out of the project. An `Audit`
records what the tools found, parsed and graded; the report card is rendered
from that record, never from what the model says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looplet import BaseToolRegistry, Block, LoopConfig
from looplet.presets import AgentPreset
from looplet.tools import register_done_tool
from looplet.workspace import Workspace, WorkspaceError

from .audit import Table, Verdict, check, worst
from .manifests import Dependency, Manifest, manifest_kind, parse_manifest
from .report import project_grade, render_card
from .versions import Ecosystem

__all__ = ["DATA", "TASK", "SYSTEM_PROMPT", "Audit", "build_tools", "build_preset", "DoctorError"]

DATA = Path(__file__).resolve().parent.parent / "data"
TASK = (
    "Audit this project's dependencies for security, license and maintenance risk: find the dependency "
    "files, parse each, check every dependency, then make the report card and finish with its summary."
)
SYSTEM_PROMPT = """You are Dependency Doctor, an auditor of a project's dependencies.
Work from evidence only, with your tools, in this order:
1. find_dependency_files to list requirements*.txt, pyproject.toml and package.json files;
2. parse_dependency_file for each file, to see what it declares;
3. check_dependencies for each file, to grade every dependency (security, license, maintenance)
   against the offline advisory, license and maintenance tables;
4. report_card, then done with a short summary: the overall grade and the worst problems.
Paths are relative to the project; nothing outside it can be read."""

#: Folders no one declares dependencies in: installed packages, caches, builds.
SKIPPED_DIRS = frozenset(
    {"node_modules", ".venv", "venv", ".tox", ".nox", "__pycache__", "site-packages", "dist", "build", ".git"}
)
MAX_FILES = 200
MAX_MANIFEST_BYTES = 2_000_000


class DoctorError(Exception):
    """A tool refused (a path outside the project, a file that is not a manifest); meant for the model."""


@dataclass
class Audit:
    """What the tools found, parsed and graded in one run: the report card's only source."""

    project: Path
    table: Table
    found: list[str] = field(default_factory=list)
    manifests: dict[str, Manifest] = field(default_factory=dict)
    verdicts: dict[str, list[Verdict]] = field(default_factory=dict)
    card_made: bool = False

    def all_verdicts(self) -> list[Verdict]:
        return [v for path in sorted(self.verdicts) for v in self.verdicts[path]]

    def unchecked(self) -> list[str]:
        return [path for path in self.found if path not in self.verdicts]

    def card(self) -> str:
        return render_card(self.project.name, str(self.table.as_of), self.all_verdicts(), self.unchecked())


def _read_manifest(workspace: Workspace, path: str) -> str:
    shown = workspace.read_shown(path, limit=MAX_MANIFEST_BYTES)
    if shown.get("binary"):
        raise DoctorError(f"{shown['path']} is a binary file, not a dependency file")
    if shown.get("cut_bytes"):
        raise DoctorError(f"{shown['path']} is larger than {MAX_MANIFEST_BYTES} bytes; not read")
    text: str = shown["content"]
    return text


def _find(workspace: Workspace, path: str) -> tuple[list[dict[str, str]], list[str]]:
    """The dependency files under `path`, and the ones refused (links that lead outside)."""
    files: list[dict[str, str]] = []
    refused: list[str] = []
    for folder, dirs, names, _fd in workspace.walk(path):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        for name in names:
            kind = manifest_kind(name)
            shown = f"{folder}/{name}" if folder else name
            if kind is None:
                continue
            try:
                workspace.locate(shown)
            except WorkspaceError:
                refused.append(shown)
                continue
            files.append({"path": shown, "kind": kind})
            if len(files) >= MAX_FILES:
                return files, refused
    return files, refused


def find_manifests(project: Path) -> list[str]:
    """The dependency files of `project`, as `find_dependency_files` lists them."""
    return [f["path"] for f in _find(Workspace(project, sandbox="none"), ".")[0]]


def _row(verdict: Verdict) -> dict[str, Any]:
    """A verdict as the model sees it in check_dependencies: letters, and reasons only below A."""
    row: dict[str, Any] = {"package": verdict.dependency.shown(), "overall": verdict.overall}
    for aspect in ("security", "license", "maintenance"):
        grade = getattr(verdict, aspect)
        row[aspect] = grade.letter if grade.letter == "A" else f"{grade.letter}: {'; '.join(grade.reasons)}"
    return row


def build_tools(project: Path, table: Table | None = None) -> tuple[BaseToolRegistry, Audit]:
    """The doctor's tools over `project`, and the `Audit` they fill in."""
    workspace = Workspace(project, sandbox="none")
    audit = Audit(Path(workspace.root), table or Table.load(DATA))
    tools = BaseToolRegistry()

    def manifest(path: str) -> Manifest:
        where = workspace.locate(path)
        if manifest_kind(where.given[-1] if where.given else "") is None:
            raise DoctorError(
                f"{where.shown} is not a dependency file (requirements*.txt, pyproject.toml, package.json)"
            )
        if where.shown not in audit.manifests:
            audit.manifests[where.shown] = parse_manifest(_read_manifest(workspace, path), where.shown)
        return audit.manifests[where.shown]

    @tools.tool
    def find_dependency_files(path: str = ".") -> dict[str, Any]:
        """List the dependency files (requirements*.txt, pyproject.toml, package.json) under a folder.

        Args:
            path: a folder relative to the project ("." for all of it).
        """
        files, refused = _find(workspace, path)
        for entry in files:
            if entry["path"] not in audit.found:
                audit.found.append(entry["path"])
        found: dict[str, Any] = {"found": len(files), "files": files}
        if refused:
            found["refused_links_outside"] = refused
        return found

    @tools.tool
    def parse_dependency_file(path: str) -> dict[str, Any]:
        """Read one dependency file and list what it declares (names, version requirements, groups).

        Args:
            path: the file, relative to the project, as find_dependency_files lists it.
        """
        return manifest(path).to_dict()

    @tools.tool
    def check_dependencies(path: str) -> dict[str, Any]:
        """Grade every dependency of one file for security, license and maintenance (A best, F worst).

        Args:
            path: the file, relative to the project.
        """
        parsed = manifest(path)
        verdicts = [check(d, audit.table) for d in parsed.dependencies]
        audit.verdicts[parsed.path] = verdicts
        return {
            "path": parsed.path,
            "checked": len(verdicts),
            "worst": worst([v.overall for v in verdicts]),
            "rows": [_row(v) for v in verdicts],
        }

    @tools.tool
    def check_package(name: str, ecosystem: Ecosystem, requirement: str = "") -> dict[str, Any]:
        """Grade one package, e.g. to see whether another version would be safe (not added to the card).

        Args:
            name: the package name.
            ecosystem: "pypi" or "npm".
            requirement: a version requirement in the ecosystem's syntax, e.g. "==2.31.0" or "^4.17.21".
        """
        dependency = Dependency(name, ecosystem, requirement.strip(), "(asked)")
        return check(dependency, audit.table).to_dict()

    @tools.tool
    def report_card() -> dict[str, Any]:
        """Make the report card from every check so far: a grade per package and the overall grade."""
        audit.card_made = True
        overall = project_grade(audit.all_verdicts())
        return {
            "overall": overall.letter,
            "summary": f"Overall grade {overall.letter}: {overall.why}.",
            "unchecked": audit.unchecked(),
            "card": audit.card(),
        }

    register_done_tool(tools)
    return tools, audit


class CardBeforeDone:
    """``check_done``: no finishing before the report card is made from every file found.

    It blocks at most `patience` times, so a model that cannot comply still
    ends (the card printed at the end then lists what was not checked).
    """

    def __init__(self, audit: Audit, patience: int = 2) -> None:
        self.audit = audit
        self.patience = patience

    def check_done(self, state: Any, log: Any, ctx: Any, step: Any) -> Block | None:
        missing = self.audit.unchecked()
        if self.patience <= 0 or (self.audit.card_made and not missing):
            return None
        self.patience -= 1
        if missing:
            return Block(f"check_dependencies has not been called for: {', '.join(missing)}")
        return Block("call report_card before done: the summary must come from the card")


class PrintCard:
    """``on_loop_end``: print the report card when the run ends (for ``looplet run``)."""

    def __init__(self, audit: Audit) -> None:
        self.audit = audit

    def on_loop_end(self, state: Any, log: Any, ctx: Any, llm: Any) -> None:
        print(self.audit.card())


def build_preset(
    project: Path, *, max_steps: int = 20, print_card: bool = False, table: Table | None = None
) -> tuple[AgentPreset, Audit]:
    """The whole agent for `project`; `print_card` adds a hook printing the card at the end."""
    if not project.is_dir():
        raise DoctorError(f"{project} is not a directory")
    try:
        tools, audit = build_tools(project, table)
    except WorkspaceError as exc:
        raise DoctorError(str(exc)) from None
    hooks: list[Any] = [CardBeforeDone(audit)]
    if print_card:
        hooks.append(PrintCard(audit))
    preset = AgentPreset(
        config=LoopConfig(max_steps=max_steps),
        tools=tools,
        hooks=hooks,
        system_prompt=SYSTEM_PROMPT,
        name="dep-doctor",
        description="Audit a project's dependency files for security, license and maintenance risk.",
    )
    return preset, audit
