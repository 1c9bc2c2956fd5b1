"""The analyst's tools, its guard and its preset; the briefing is rendered from what the tools found.

Every feed is read through `looplet.workspace.Workspace` over the
feed folder: relative names only, nothing outside the folder (no ``..``,
absolute paths, ``~`` or symbolic links leading out). A `Briefing` records
the indicators, ratings and techniques the tools produced; the printed
briefing comes from that record, not from the model's words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looplet import BaseToolRegistry, Block, LoopConfig
from looplet.presets import AgentPreset
from looplet.tools import register_done_tool
from looplet.workspace import Workspace, WorkspaceError

from .briefing import render_briefing
from .iocs import Indicators, extract_indicators
from .knowledge import RULE, Feeds, Rating, map_techniques, rate

__all__ = [
    "FEEDS",
    "TASK",
    "SYSTEM_PROMPT",
    "IntelError",
    "Briefing",
    "BriefingBeforeDone",
    "PrintBriefing",
    "build_tools",
    "build_preset",
]

FEEDS = Path(__file__).resolve().parent.parent / "feeds"
TASK = (
    "Write today's security briefing from the local feeds: extract the indicators from each advisory, "
    "look up and rate every CVE it mentions, map the activity to ATT&CK, then make the briefing and "
    "finish with its summary."
)
SYSTEM_PROMPT = f"""You are a threat-intelligence analyst working offline, from local feed files only.
Work from evidence, with your tools:
1. list_feeds, to see the advisories and data files;
2. extract_iocs for each advisory (IPs, domains, URLs, hashes, CVE ids; defanged forms are understood);
3. lookup_cve and rate_risk for each CVE the advisories mention;
4. map_attack for each advisory (and for a CVE id when useful);
5. make_briefing, then done with a short summary.
The risk rule: {RULE}."""
STRUCTURED = {"cves.json": "cves", "attack.json": "attack", "assets.json": "assets"}
TEXT_SUFFIXES = (".txt", ".md")


class IntelError(Exception):
    """A tool refused (an unknown CVE, a feed that is not an advisory); meant for the model."""


@dataclass
class Briefing:
    """What the tools produced in one run: the printed briefing's only source."""

    folder: Path
    feeds: Feeds
    sources: list[str] = field(default_factory=list)
    indicators: Indicators = field(default_factory=Indicators)
    ratings: dict[str, Rating] = field(default_factory=dict)
    techniques: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_in_table: list[str] = field(default_factory=list)
    made: bool = False

    def add_techniques(self, mapped: dict[str, Any]) -> None:
        for technique in mapped["techniques"]:
            known = self.techniques.setdefault(technique["id"], {**technique, "evidence": []})
            known["evidence"] = sorted(set(known["evidence"]) | set(technique["evidence"]))
        self.not_in_table += [t for t in mapped["not_in_table"] if t not in self.not_in_table]

    def unrated(self) -> list[str]:
        return [cve for cve in self.indicators.cves if cve in self.feeds.cves and cve not in self.ratings]

    def summary(self) -> str:
        ratings = sorted(self.ratings.values(), key=lambda r: (-r.points, r.cve))
        counts = {level: sum(1 for r in ratings if r.rating == level) for level in ("critical", "high")}
        blockable = len(self.indicators.ips) + len(self.indicators.domains) + len(self.indicators.urls)
        top = f"; patch {ratings[0].cve} first ({ratings[0].rating})" if ratings else ""
        return (
            f"{len(ratings)} CVEs rated ({counts['critical']} critical, {counts['high']} high), "
            f"{blockable} indicators to block, {len(self.techniques)} ATT&CK techniques{top}."
        )

    def render(self) -> str:
        return render_briefing(self)


def _feed_kind(name: str) -> str | None:
    if name in STRUCTURED:
        return STRUCTURED[name]
    return "advisory" if name.lower().endswith(TEXT_SUFFIXES) else None


def _reader(workspace: Workspace) -> Any:
    def read(name: str) -> str:
        shown = workspace.read_shown(name, limit=2_000_000)
        if shown.get("binary") or shown.get("cut_bytes"):
            raise IntelError(f"{shown['path']} is binary or over 2 MB; not read")
        text: str = shown["content"]
        return text

    return read


def _list_feeds(workspace: Workspace) -> list[dict[str, str]]:
    feeds = []
    for folder_name, _dirs, names, _fd in workspace.walk("."):
        for name in names:
            kind = _feed_kind(name)
            if kind is not None:
                feeds.append({"name": f"{folder_name}/{name}" if folder_name else name, "kind": kind})
    return feeds


def build_tools(folder: Path) -> tuple[BaseToolRegistry, Briefing]:
    """The analyst's tools over the feed `folder`, and the `Briefing` they fill in."""
    workspace = Workspace(folder, sandbox="none")
    read = _reader(workspace)
    briefing = Briefing(Path(workspace.root), Feeds.load(read))
    tools = BaseToolRegistry()

    def advisory(name: str) -> str:
        where = workspace.locate(name)
        if _feed_kind(where.shown.rsplit("/", 1)[-1]) != "advisory":
            raise IntelError(f"{where.shown} is not an advisory (a .txt or .md file); see list_feeds")
        if where.shown not in briefing.sources:
            briefing.sources.append(where.shown)
        text: str = read(name)
        return text

    def cve(cve_id: str) -> Any:
        found = briefing.feeds.cves.get(cve_id.strip().upper())
        if found is None:
            raise IntelError(f"{cve_id} is not in the local CVE feed ({len(briefing.feeds.cves)} CVEs)")
        return found

    @tools.tool
    def list_feeds() -> dict[str, Any]:
        """List the feed files: advisories (text) and the CVE, ATT&CK and asset tables."""
        return {"feeds": _list_feeds(workspace)}

    @tools.tool
    def read_feed(name: str) -> dict[str, Any]:
        """Read one advisory's text.

        Args:
            name: the file, as list_feeds names it.
        """
        return {"name": name, "text": advisory(name)}

    @tools.tool
    def extract_iocs(name: str) -> dict[str, Any]:
        """Extract the indicators of compromise of an advisory: IPs, domains, URLs, hashes, CVE ids
        (defanged forms such as 1.2.3[.]4 and hxxps:// are read too; results are refanged).

        Args:
            name: the advisory file, as list_feeds names it.
        """
        found = extract_indicators(advisory(name))
        briefing.indicators.merge(found)
        return {"name": name, **found.to_dict()}

    @tools.tool
    def lookup_cve(cve_id: str) -> dict[str, Any]:
        """Look a CVE up in the local feed: title, CVSS, whether it is exploited, affected products.

        Args:
            cve_id: e.g. "CVE-2021-44228".
        """
        found = cve(cve_id)
        return {**found.to_dict(), "exposed_assets": briefing.feeds.exposed(found)}

    @tools.tool
    def rate_risk(cve_id: str) -> dict[str, Any]:
        """Rate a CVE's risk to us (critical/high/medium/low, P1-P4) and say which factors counted.

        Args:
            cve_id: e.g. "CVE-2021-44228".
        """
        rating = rate(cve(cve_id), briefing.feeds)
        briefing.ratings[rating.cve] = rating
        return rating.to_dict()

    @tools.tool
    def map_attack(source: str) -> dict[str, Any]:
        """Map an advisory or a CVE to MITRE ATT&CK techniques, with the evidence for each.

        Args:
            source: an advisory file name, or a CVE id from the local feed.
        """
        if source.strip().upper().startswith("CVE-"):
            found = cve(source)
            mapped = map_techniques(found.title, briefing.feeds, found.techniques)
        else:
            mapped = map_techniques(advisory(source), briefing.feeds)
        briefing.add_techniques(mapped)
        return {"source": source, **mapped}

    @tools.tool
    def make_briefing() -> dict[str, Any]:
        """Write the briefing from everything found so far: risks, indicators, techniques, actions."""
        briefing.made = True
        return {"summary": briefing.summary(), "unrated": briefing.unrated(), "briefing": briefing.render()}

    register_done_tool(tools)
    return tools, briefing


class BriefingBeforeDone:
    """``check_done``: no finishing before every mentioned CVE is rated and the briefing is made
    (blocks at most `patience` times, so a model that cannot comply still ends)."""

    def __init__(self, briefing: Briefing, patience: int = 2) -> None:
        self.briefing = briefing
        self.patience = patience

    def check_done(self, state: Any, log: Any, ctx: Any, step: Any) -> Block | None:
        unrated = self.briefing.unrated()
        if self.patience <= 0 or (self.briefing.made and not unrated):
            return None
        self.patience -= 1
        if unrated:
            return Block(f"rate_risk has not been called for: {', '.join(unrated)}")
        return Block("call make_briefing before done: the summary must come from the briefing")


class PrintBriefing:
    """``on_loop_end``: print the briefing when the run ends (for ``looplet run``)."""

    def __init__(self, briefing: Briefing) -> None:
        self.briefing = briefing

    def on_loop_end(self, state: Any, log: Any, ctx: Any, llm: Any) -> None:
        print(self.briefing.render())


def build_preset(
    folder: Path = FEEDS, *, max_steps: int = 25, print_briefing: bool = False
) -> tuple[AgentPreset, Briefing]:
    """The whole analyst over the feed `folder`; `print_briefing` prints the briefing at the end."""
    if not folder.is_dir():
        raise IntelError(f"{folder} is not a directory")
    try:
        tools, briefing = build_tools(folder)
    except (WorkspaceError, OSError, ValueError, KeyError) as exc:
        raise IntelError(f"cannot load the feeds in {folder}: {exc}") from None
    hooks: list[Any] = [BriefingBeforeDone(briefing)]
    if print_briefing:
        hooks.append(PrintBriefing(briefing))
    preset = AgentPreset(
        config=LoopConfig(max_steps=max_steps),
        tools=tools,
        hooks=hooks,
        system_prompt=SYSTEM_PROMPT,
        name="threat-intel",
        description="A local-first security briefing from offline feeds.",
    )
    return preset, briefing
