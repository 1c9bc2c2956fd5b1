"""The git detective cartridge: repository health from git history, as a report.

    python -m looplet run examples/git_detective/skill "How healthy is this repo?" --workspace . --scripted

`build(runtime)` returns an agent over the git repository ``runtime.workspace``
with five read-only tools (overview, contributors, hotspots, coupled_files,
recent_activity), think and done, and a `HealthReport` hook that turns the
evidence the tools gathered and the model's verdict into a Markdown report
(the run's artifact ``report``). `scripted_responses(runtime)` is a model
that calls each tool once and writes its verdict from what they returned.

Git runs as an argv list (never a shell), with a time limit, without the
caller's ``GIT_*`` variables, and with the repository's own configuration
kept from running programs: no pager, no fsmonitor, no signature checks
(``gpg.program``), no external diff or textconv drivers. A repository is
untrusted input: its configuration must not execute anything when it is
only read. History is read up to `MAX_COMMITS` commits back.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from looplet import BaseToolRegistry, LoopConfig, ToolCall, ToolResult
from looplet.evals import record_artifact
from looplet.presets import AgentPreset
from looplet.tools import register_done_tool, register_think_tool

#: How far back the history tools read (newest first).
MAX_COMMITS = 5000
#: A commit touching more files than this (a rename sweep, a vendored import) says nothing about coupling.
MAX_FILES_PER_COMMIT = 40
GIT_TIMEOUT_S = 60.0
#: Settings that keep a repository's own configuration from running programs while it is read.
SAFE_CONFIG = (
    "core.fsmonitor=false",
    "core.pager=cat",
    "log.showSignature=false",
    "core.hooksPath=/dev/null",
)
TOOLS = ("overview", "contributors", "hotspots", "coupled_files", "recent_activity")

SYSTEM_PROMPT = (
    "You are a repository health detective. Gather evidence with the tools (overview, contributors, "
    "hotspots, coupled_files, recent_activity), then call done with a short verdict that cites the "
    "numbers. You cannot change the repository."
)


class GitError(Exception):
    """git failed or is missing; the message is one line for the model and the user."""


class GitRepo:
    """A git repository read through ``git`` argv lists (see the module docstring for the guards)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = str(Path(root).resolve())
        top = self.git("rev-parse", "--show-toplevel").strip()
        if not top:
            raise GitError(f"{self.root} is not inside a git repository")

    def git(self, *args: str) -> str:
        """The output of ``git ARGS`` in the repository, or a `GitError` with git's first line."""
        argv = ["git", "--no-pager", "-C", self.root]
        for setting in SAFE_CONFIG:
            argv += ["-c", setting]
        try:
            done = subprocess.run(
                [*argv, *args],
                env=git_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=GIT_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            raise GitError("git is not installed (it must be on PATH)") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"git {args[0]} took longer than {GIT_TIMEOUT_S:.0f}s") from None
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise GitError(f"git {args[0]} failed: {said[0] if said else f'exit code {done.returncode}'}")
        return done.stdout.decode("utf-8", "replace")

    def has_commits(self) -> bool:
        try:
            self.git("rev-parse", "--verify", "--quiet", "HEAD")
        except GitError:
            return False
        return True

    def commits(self, *extra: str) -> list[dict[str, Any]]:
        """Non-merge commits, newest first: hash, author, date and the files with lines added/deleted."""
        fmt = "--format=%x1e%h%x1f%aN%x1f%aI%x1f%cI"
        out = self.git(
            "log", "--no-merges", f"-n{MAX_COMMITS}", "--numstat", "--no-renames", "--no-textconv",
            "--no-ext-diff", "-z", fmt, *extra, "HEAD", "--",
        )  # fmt: skip
        return [parse_commit(chunk) for chunk in out.split("\x1e") if chunk.strip("\0\n")]


def git_env() -> dict[str, str]:
    """The caller's environment without ``GIT_*`` (a hook's GIT_DIR would point elsewhere), C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
    return env


def parse_commit(chunk: str) -> dict[str, Any]:
    """One ``-z`` log record: ``hash␟author␟authored␟committed`` then NUL-separated numstat lines."""
    header, _, rest = chunk.partition("\n")
    header = header.strip("\0")
    short, author, authored, committed = (header.split("\x1f") + ["", "", "", ""])[:4]
    files: dict[str, int] = {}
    for item in rest.split("\0"):
        added, _, tail = item.strip("\n").partition("\t")
        deleted, _, path = tail.partition("\t")
        if path:
            files[path] = _lines(added) + _lines(deleted)
    return {"hash": short, "author": author, "date": authored, "committed": committed, "files": files}


def _lines(text: str) -> int:
    return int(text) if text.isdigit() else 0  # "-" for binary files


# -- the tools ----------------------------------------------------------------------------------


def overview(repo: GitRepo) -> dict[str, Any]:
    if not repo.has_commits():
        return {"commits": 0, "note": "the repository has no commits yet"}
    head = repo.git("log", "-1", "--format=%h%x1f%aI%x1f%s", "HEAD").strip().split("\x1f")
    roots = repo.git("rev-list", "--max-parents=0", "HEAD").split()
    first = repo.git("log", "-1", "--format=%aI", roots[-1]).strip() if roots else ""
    branches = repo.git("for-each-ref", "--format=%(refname:short)", "refs/heads").split()
    tags = repo.git("for-each-ref", "--format=%(refname:short)", "refs/tags").split()
    files = [f for f in repo.git("ls-files", "-z").split("\0") if f]
    return {
        "commits": int(repo.git("rev-list", "--count", "HEAD").strip()),
        "first_commit": first,
        "last_commit": head[1] if len(head) > 1 else "",
        "age_days": days_between(first, now_iso()) if first else 0,
        "head": {"hash": head[0], "subject": head[2] if len(head) > 2 else ""},
        "branches": len(branches),
        "tags": len(tags),
        "files_tracked": len(files),
    }


def contributors(repo: GitRepo, limit: int) -> dict[str, Any]:
    history = repo.commits() if repo.has_commits() else []
    counts = Counter(c["author"] for c in history)
    total = sum(counts.values())
    ranked = counts.most_common()
    return {
        "commits_read": total,
        "authors": len(ranked),
        "bus_factor": bus_factor([n for _, n in ranked]),
        "top": [{"author": name, "commits": n, "share": round(n / total, 3)} for name, n in ranked[:limit]],
    }


def bus_factor(counts: Sequence[int]) -> int:
    """How few authors (the most active first) made more than half of the commits; 0 for none."""
    total = sum(counts)
    covered = 0
    for people, n in enumerate(sorted(counts, reverse=True), 1):
        covered += n
        if covered * 2 > total:
            return people
    return 0


def hotspots(repo: GitRepo, limit: int) -> dict[str, Any]:
    history = repo.commits() if repo.has_commits() else []
    changes: Counter[str] = Counter()
    churn: Counter[str] = Counter()
    authors: dict[str, set[str]] = {}
    for commit in history:
        for path, lines in commit["files"].items():
            changes[path] += 1
            churn[path] += lines
            authors.setdefault(path, set()).add(commit["author"])
    tracked = {f for f in repo.git("ls-files", "-z").split("\0") if f} if history else set()
    return {
        "commits_read": len(history),
        "files_changed": len(changes),
        "hotspots": [
            {
                "path": path,
                "changes": n,
                "lines_changed": churn[path],
                "authors": len(authors[path]),
                "still_exists": path in tracked,
            }
            for path, n in sorted(changes.items(), key=lambda kv: (-kv[1], -churn[kv[0]], kv[0]))[:limit]
        ],
    }


def coupled_files(repo: GitRepo, limit: int, min_together: int) -> dict[str, Any]:
    history = repo.commits() if repo.has_commits() else []
    changes: Counter[str] = Counter()
    together: Counter[tuple[str, str]] = Counter()
    skipped = 0
    for commit in history:
        paths = sorted(commit["files"])
        changes.update(paths)
        if len(paths) > MAX_FILES_PER_COMMIT:
            skipped += 1
            continue
        together.update(itertools.combinations(paths, 2))
    ranked = sorted(
        ((n, n / min(changes[a], changes[b]), a, b) for (a, b), n in together.items() if n >= min_together),
        key=lambda r: (-r[0], -r[1], r[2], r[3]),
    )
    pairs = [{"files": [a, b], "together": n, "coupling": round(c, 3)} for n, c, a, b in ranked]
    return {
        "commits_read": len(history),
        "large_commits_skipped": skipped,
        "pairs": pairs[:limit],
        "more": max(0, len(pairs) - limit),
    }


def recent_activity(repo: GitRepo, days: int) -> dict[str, Any]:
    history = repo.commits(f"--since={days}.days.ago") if repo.has_commits() else []
    last = repo.git("log", "-1", "--format=%cI", "HEAD").strip() if repo.has_commits() else ""
    by_author = Counter(c["author"] for c in history)
    return {
        "days": days,
        "commits": len(history),
        "authors": len(by_author),
        "active_days": len({c["committed"][:10] for c in history}),
        "by_author": [{"author": a, "commits": n} for a, n in by_author.most_common(10)],
        "days_since_last_commit": days_between(last, now_iso()) if last else None,
        "latest": [{"hash": c["hash"], "author": c["author"], "date": c["committed"]} for c in history[:5]],
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def days_between(earlier: str, later: str) -> int:
    return max(0, (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).days)


def _bounded(value: int, low: int, high: int, name: str) -> int:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def git_tools(repo: GitRepo) -> BaseToolRegistry:
    """The detective's registry: the five history tools, think and done."""
    tools = BaseToolRegistry()

    @tools.tool(name="overview", concurrent_safe=True)
    def overview_tool() -> dict[str, Any]:
        """The repository at a glance: commits, first and last commit, age, branches, tags, tracked files."""
        return overview(repo)

    @tools.tool(name="contributors", concurrent_safe=True)
    def contributors_tool(limit: int = 10) -> dict[str, Any]:
        """Authors by commits (merges left out), each one's share, and the bus factor.

        Args:
            limit: how many authors to list (1-100).
        """
        return contributors(repo, _bounded(limit, 1, 100, "limit"))

    @tools.tool(name="hotspots", concurrent_safe=True)
    def hotspots_tool(limit: int = 10) -> dict[str, Any]:
        """The files changed most often, with lines changed and how many authors touched them.

        Args:
            limit: how many files to list (1-100).
        """
        return hotspots(repo, _bounded(limit, 1, 100, "limit"))

    @tools.tool(name="coupled_files", concurrent_safe=True)
    def coupled_files_tool(limit: int = 10, min_together: int = 2) -> dict[str, Any]:
        """Pairs of files that change in the same commits (coupling: together / the rarer one's changes).

        Args:
            limit: how many pairs to list (1-100).
            min_together: the fewest shared commits a pair needs (1-1000).
        """
        return coupled_files(repo, _bounded(limit, 1, 100, "limit"), _bounded(min_together, 1, 1000, "min"))

    @tools.tool(name="recent_activity", concurrent_safe=True)
    def recent_activity_tool(days: int = 30) -> dict[str, Any]:
        """Commits, authors and active days in the last `days` days, and days since the last commit.

        Args:
            days: how far back to look (1-3650).
        """
        return recent_activity(repo, _bounded(days, 1, 3650, "days"))

    register_think_tool(tools)
    register_done_tool(tools)
    return tools


# -- the report -----------------------------------------------------------------------------------


class HealthReport:
    """Keeps each history tool's latest result and, at the end, writes the Markdown report.

    The report is the run's artifact ``report`` (``state.metadata["artifacts"]``,
    so a trace keeps it); `text` holds it for the caller to print.
    """

    def __init__(self, repo: GitRepo) -> None:
        self.repo = repo
        self.evidence: dict[str, Any] = {}
        self.text = ""

    def post_dispatch(self, state: Any, log: Any, tool_call: ToolCall, result: ToolResult, step: int) -> None:
        if result.ok and tool_call.tool in TOOLS and isinstance(result.data, dict):
            self.evidence[tool_call.tool] = result.data

    def on_loop_end(self, state: Any, log: Any, ctx: Any, llm: Any) -> None:
        answer = state.final_answer or {}
        verdict = str(answer.get("answer") or answer.get("summary") or "")
        self.text = render_report(self.repo.root, self.evidence, verdict)
        record_artifact(state, "report", self.text)


def render_report(root: str, evidence: dict[str, Any], verdict: str) -> str:
    """The report as Markdown: the verdict, then one section per tool that ran."""
    lines = [f"# Repository health: {Path(root).name}", ""]
    lines += [verdict or "_The agent gave no verdict._", ""]
    for name, render in _SECTIONS:
        if name in evidence:
            lines += render(evidence[name]) + [""]
    missing = [name for name in TOOLS if name not in evidence]
    if missing:
        lines.append(f"_Not examined: {', '.join(missing)}._")
    return "\n".join(lines).rstrip() + "\n"


def _overview_md(d: dict[str, Any]) -> list[str]:
    if not d.get("commits"):
        return ["## Overview", "", "No commits yet."]
    return [
        "## Overview",
        "",
        f"- {count(d['commits'], 'commit')} over {count(d['age_days'], 'day')} "
        f"({d['first_commit'][:10]} to {d['last_commit'][:10]})",
        f"- {count(d['branches'], 'branch')}, {count(d['tags'], 'tag')}, "
        f"{count(d['files_tracked'], 'tracked file')}",
        f"- HEAD {d['head']['hash']}: {d['head']['subject']}",
    ]


def _contributors_md(d: dict[str, Any]) -> list[str]:
    out = ["## Contributors and bus factor", ""]
    out.append(f"- {count(d['authors'], 'author')}; bus factor **{d['bus_factor']}**")
    out += [f"- {a['author']}: {count(a['commits'], 'commit')} ({a['share']:.0%})" for a in d["top"]]
    return out


def _hotspots_md(d: dict[str, Any]) -> list[str]:
    out = ["## Hotspots", "", "| file | changes | lines changed | authors |", "|---|---|---|---|"]
    for h in d["hotspots"]:
        gone = "" if h["still_exists"] else " (deleted)"
        out.append(f"| `{h['path']}`{gone} | {h['changes']} | {h['lines_changed']} | {h['authors']} |")
    return out


def _coupled_md(d: dict[str, Any]) -> list[str]:
    out = ["## Files changed together", ""]
    if not d["pairs"]:
        return out + ["No pair of files changed together often enough to stand out."]
    for p in d["pairs"]:
        a, b = p["files"]
        out.append(
            f"- `{a}` + `{b}`: {count(p['together'], 'commit')} together (coupling {p['coupling']:.0%})"
        )
    return out


def _recent_md(d: dict[str, Any]) -> list[str]:
    since = d["days_since_last_commit"]
    out = [
        f"## Recent activity (last {d['days']} days)",
        "",
        f"- {count(d['commits'], 'commit')} by {count(d['authors'], 'author')} "
        f"on {count(d['active_days'], 'day')}",
        f"- last commit {count(since, 'day')} ago" if since is not None else "- no commits at all",
    ]
    return out + [f"- {a['author']}: {count(a['commits'], 'commit')}" for a in d["by_author"]]


def count(n: int, noun: str) -> str:
    """``1 commit``, ``2 commits``, ``2 branches``."""
    if n == 1:
        return f"1 {noun}"
    return f"{n} {noun}es" if noun.endswith(("ch", "s")) else f"{n} {noun}s"


_SECTIONS = (
    ("overview", _overview_md),
    ("contributors", _contributors_md),
    ("hotspots", _hotspots_md),
    ("coupled_files", _coupled_md),
    ("recent_activity", _recent_md),
)


# -- the cartridge ----------------------------------------------------------------------------------


def build(runtime: Any) -> AgentPreset:
    """The detective for the repository at ``runtime.workspace``.

    Raises:
        GitError: the workspace is not in a git repository, or git is missing.
    """
    repo = GitRepo(runtime.workspace)
    instructions = runtime.card.instructions.strip()
    return AgentPreset(
        config=LoopConfig(max_steps=12),
        tools=git_tools(repo),
        hooks=[HealthReport(repo)],
        system_prompt=f"{SYSTEM_PROMPT}\n\n{instructions}" if instructions else SYSTEM_PROMPT,
        name="git-detective",
        description=f"Repository health of {repo.root} from its git history.",
    )


def scripted_responses(runtime: Any) -> Any:
    """A model that calls each tool once, then writes its verdict from what the tools returned."""
    plan = [
        ("overview", {}),
        ("contributors", {"limit": 5}),
        ("hotspots", {"limit": 5}),
        ("coupled_files", {"limit": 5, "min_together": 2}),
        ("recent_activity", {"days": 30}),
    ]

    def reply(request: Any) -> ToolCall:
        turn = sum(1 for m in request.messages if m.role == "assistant")
        if turn < len(plan):
            tool, args = plan[turn]
            return ToolCall(tool, args, call_id=f"call_{turn + 1}")
        return ToolCall(
            "done", {"answer": verdict(seen_results(request.messages))}, call_id=f"call_{turn + 1}"
        )

    return reply


def seen_results(messages: Sequence[Any]) -> dict[str, Any]:
    """The latest successful result of each tool in the conversation, decoded from its JSON."""
    found: dict[str, Any] = {}
    for message in messages:
        if message.role == "tool" and not message.error:
            try:
                found[message.name] = json.loads(message.content)
            except ValueError:
                continue
    return found


def verdict(results: dict[str, Any]) -> str:
    """The scripted model's verdict: the headline numbers, and one next step."""
    people = results.get("contributors") or {}
    top = (people.get("top") or [{}])[0]
    hot = ((results.get("hotspots") or {}).get("hotspots") or [{}])[0]
    recent = results.get("recent_activity") or {}
    parts = []
    if people:
        parts.append(
            f"Bus factor {people.get('bus_factor')}: {top.get('author', '?')} made "
            f"{top.get('share', 0):.0%} of {people.get('commits_read')} commits."
        )
    if hot:
        parts.append(f"Hottest file: {hot.get('path')} ({hot.get('changes')} changes).")
    if recent:
        parts.append(f"{recent.get('commits')} commits in the last {recent.get('days')} days.")
    low_bus = people.get("bus_factor", 0) <= 1
    parts.append(
        "Next step: spread knowledge of the hottest files (pair on them, review by a second author)."
        if low_bus
        else "Next step: add tests around the hottest files before they change again."
    )
    return " ".join(parts)
