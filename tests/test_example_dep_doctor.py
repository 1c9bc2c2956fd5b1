"""examples/dep_doctor: the command as the seed README writes it, the report card against the tables,
the version-range matching, the parsers, the confinement of the file tools, and the cartridge."""

from __future__ import annotations

import importlib.util
import marshal
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from looplet import FunctionBackend, MockLLMBackend, ToolCall

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "dep_doctor"
DEMO = EXAMPLE / "demo_project"


def _load(path: Path, name: str) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


agent = _load(EXAMPLE / "agent.py", "_test_dep_doctor_agent")
doctor: Any = agent.doctor
versions: Any = sys.modules[doctor.__name__ + ".versions"]
manifests: Any = sys.modules[doctor.__name__ + ".manifests"]


def _no_model_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}


def card_rows(text: str) -> dict[str, dict[str, str]]:
    """The card's table as {package: {column: value}} (columns are two-space separated)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("package "))
    header = re.split(r"\s{2,}", lines[start].strip())
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def strip_times(text: str) -> str:
    return re.sub(r"\[[\d.]+m?s\]", "[t]", text)


# -- the scripted run --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_output() -> str:
    """The seed README's command, exactly as written, from the repository root, with no key."""
    out = subprocess.run(
        [sys.executable, "examples/dep_doctor/agent.py", "examples/dep_doctor/demo_project", "--scripted"],
        cwd=ROOT,
        env=_no_model_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout


def test_the_seed_readme_command_audits_the_demo_project_and_prints_the_card_last(demo_output: str) -> None:
    assert "#1 ✓ find_dependency_files(path='.')" in demo_output
    assert "stopped: done" in demo_output
    card = demo_output.split("Dependency report card: demo_project", 1)[1]
    assert card.rstrip().splitlines()[-1].startswith("Overall grade: D (")
    steps = [line for line in demo_output.splitlines() if re.match(r"#\d+ ", line)]
    assert all("✓" in line for line in steps), steps
    assert [s.split("(")[0].split()[-1] for s in steps] == (
        ["find_dependency_files"]
        + ["parse_dependency_file"] * 4
        + ["check_dependencies"] * 4
        + ["report_card", "done"]
    )


def test_the_card_grades_each_package_from_the_tables(demo_output: str) -> None:
    rows = card_rows(demo_output.split("Dependency report card", 1)[1])
    expected = {
        # package: (security, license, maintenance, overall)
        "lodash": ("F", "A", "D", "F"),  # pinned 4.17.20 < 4.17.21 (high)
        "PyYAML": ("F", "A", "A", "F"),  # pinned 5.3.1 < 5.4 (critical)
        "requests[socks]": ("D", "A", "A", "D"),  # pinned 2.25.1, two medium advisories
        "flask": ("D", "A", "A", "D"),  # ">=2.3, <3" admits 2.3.0 and 2.3.1 (high)
        "minimist": ("D", "A", "B", "D"),  # "^1.2.5" admits 1.2.5 (critical)
        "request": ("C", "A", "F", "F"),  # deprecated; "^2.88.2" admits 2.88.2 (medium)
        "express": ("A", "A", "A", "A"),  # "^4.21.2" is above the fix 4.19.2
        "moment": ("A", "A", "C", "C"),  # "^2.29.4" starts at the fix; maintenance mode
        "mysql-connector-python": ("A", "F", "A", "F"),  # GPL-2.0-only
        "PyMuPDF": ("A", "F", "A", "F"),  # AGPL-3.0-only
        "chardet": ("A", "C", "B", "C"),  # LGPL
        "nose": ("A", "C", "F", "F"),  # unmaintained since 2015
        "left-pad": ("A", "A", "F", "F"),  # deprecated
        "acme-billing-sdk": ("A", "?", "?", "?"),  # not in the tables: not a pass
        "pytest": ("A", "A", "A", "A"),
    }
    for package, (security, license_, maintenance, overall) in expected.items():
        row = rows[package]
        assert (row["security"], row["license"], row["maintenance"], row["overall"]) == (
            security,
            license_,
            maintenance,
            overall,
        ), package
    assert rows["PyMuPDF"]["group"] == "optional:pdf" and rows["jest"]["group"] == "dev"
    assert len(rows) == 18


def test_the_card_says_why_with_the_advisory_and_the_fix(demo_output: str) -> None:
    assert "security F: the pinned 4.17.20 is affected by CVE-2021-23337 (high)" in demo_output
    assert "fixed in 4.17.21" in demo_output
    assert "'>=2.3, <3' allows versions affected by CVE-2023-30861 (high)" in demo_output
    assert "no fixed version: replace the package" in demo_output  # request
    assert "CVE-2024-29041" not in demo_output  # express is above the fix
    assert "CVE-2022-31129" not in demo_output  # moment starts at the fix


def test_the_answer_quotes_the_card_the_tools_made(demo_output: str) -> None:
    (answer,) = [line for line in demo_output.splitlines() if line.startswith("answer: ")]
    (overall,) = [line for line in demo_output.splitlines() if line.startswith("Overall grade: ")]
    assert answer == "answer: " + overall.replace("Overall grade: D (", "Overall grade D: ")[:-1] + "."


def test_in_process_run_is_the_same_as_the_command(
    demo_output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert agent.main([str(DEMO), "--scripted"]) == 0
    assert strip_times(capsys.readouterr().out) == strip_times(demo_output)


def test_the_card_follows_the_project_files_not_a_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "requirements.txt").write_text("PyYAML==6.0.2\n")
    assert agent.main([str(tmp_path), "--scripted"]) == 0
    assert card_rows(capsys.readouterr().out)["PyYAML"]["security"] == "A"
    (tmp_path / "requirements.txt").write_text("PyYAML==5.3.1\n")
    assert agent.main([str(tmp_path), "--scripted"]) == 0
    out = capsys.readouterr().out
    assert card_rows(out)["PyYAML"]["security"] == "F"
    assert "Overall grade: F" in out


def test_a_project_without_dependency_files_gets_no_grade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert agent.main([str(tmp_path), "--scripted"]) == 0
    out = capsys.readouterr().out
    assert "No dependency was checked." in out and "Overall grade: ? (no package could be graded)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["/no/such/project", "--scripted"], "'/no/such/project' is not a directory"),
        ([str(DEMO), "--max-steps", "0"], "the step budget must be at least 1"),
    ],
)
def test_a_usage_mistake_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        agent.main(argv)
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("dep_doctor: error: ") and message in line


def test_without_a_model_configured_it_says_so_and_points_to_scripted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [k for k in os.environ if k.startswith("OPENAI_")]:
        monkeypatch.delenv(name)
    assert agent.main([str(DEMO)]) == 2
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY" in err and "--scripted" in err and "Traceback" not in err


# -- version ranges -----------------------------------------------------------------------------

CONTAINS = [
    # (ecosystem, range, version, inside)
    ("pypi", "==2.25.1", "2.25.1", True),
    ("pypi", "==2.25.1", "2.25.2", False),
    ("pypi", "==2.25", "2.25.0", True),  # trailing zeros do not count
    ("pypi", ">=2.3,<3", "2.3.0", True),
    ("pypi", ">=2.3,<3", "3.0", False),
    ("pypi", "<3", "3.0rc1", False),  # "<3" excludes 3's pre-releases
    ("pypi", "<3rc2", "3.0rc1", True),
    ("pypi", ">2.0", "2.0.1", True),
    ("pypi", "<=2.0", "2.0", True),
    ("pypi", "~=1.4.5", "1.4.9", True),
    ("pypi", "~=1.4.5", "1.5.0", False),
    ("pypi", "~=1.4", "1.9", True),
    ("pypi", "~=1.4", "2.0", False),
    ("pypi", "==1.2.*", "1.2.7", True),
    ("pypi", "==1.2.*", "1.3", False),
    ("pypi", "!=1.2.*,>1", "1.2.7", False),
    ("pypi", "!=1.2.*,>1", "1.3", True),
    ("pypi", ">=1.0,!=1.5", "1.5", False),
    ("pypi", ">=1.0,!=1.5", "1.5.1", True),
    ("pypi", "", "0.0.1", True),
    ("pypi", "==1!1.0", "2.0", False),  # an epoch outranks every release
    ("npm", "4.17.20", "4.17.20", True),
    ("npm", "^1.2.5", "1.9.0", True),
    ("npm", "^1.2.5", "2.0.0", False),
    ("npm", "^1.2.5", "1.2.4", False),
    ("npm", "^0.2.3", "0.2.9", True),
    ("npm", "^0.2.3", "0.3.0", False),
    ("npm", "^0.0.3", "0.0.4", False),
    ("npm", "^1.2", "1.9.9", True),
    ("npm", "~1.2.3", "1.2.9", True),
    ("npm", "~1.2.3", "1.3.0", False),
    ("npm", "~1", "1.9.0", True),
    ("npm", "1.x", "1.4.2", True),
    ("npm", "1.x", "2.0.0", False),
    ("npm", "1.2.x", "1.3.0", False),
    ("npm", "*", "9.9.9", True),
    ("npm", ">=1.0.0 <1.2.6", "1.2.5", True),
    ("npm", ">= 1.0.0 < 1.2.6", "1.2.6", False),
    ("npm", "<=2.88.2", "2.88.2", True),
    ("npm", ">1.2", "1.2.9", False),  # ">1.2" is ">=1.3.0"
    ("npm", "<=1.2", "1.2.9", True),
    ("npm", "1.0.0 - 1.4", "1.4.9", True),
    ("npm", "1.0.0 - 1.4", "1.5.0", False),
    ("npm", "1.x || >=2.5.0 <3", "2.6.0", True),
    ("npm", "1.x || >=2.5.0 <3", "2.4.0", False),
    ("npm", "^1.0.0", "1.0.0-beta", False),  # a pre-release sorts before its release
]


@pytest.mark.parametrize(("ecosystem", "spec", "version", "inside"), CONTAINS)
def test_a_range_holds_exactly_its_versions(ecosystem: str, spec: str, version: str, inside: bool) -> None:
    wanted = versions.parse_spec(spec, ecosystem)
    assert versions.contains(wanted, versions.parse_version(version, ecosystem)) is inside


OVERLAPS = [
    ("pypi", ">=2.3,<3", ">=2.3.0,<2.3.2", True),
    ("pypi", ">=2.3.2,<3", ">=2.3.0,<2.3.2", False),
    ("pypi", "==2.3.2", "<2.3.2", False),
    ("pypi", "<=2.3.2", ">=2.3.2", True),
    ("npm", "^4.21.2", "<4.19.2", False),
    ("npm", "^1.2.5", "<1.2.6", True),
    ("npm", "^2.29.4", ">=2.18.0 <2.29.4", False),
]


@pytest.mark.parametrize(("ecosystem", "left", "right", "meet"), OVERLAPS)
def test_a_requirement_meets_an_affected_range_only_where_they_share_a_version(
    ecosystem: str, left: str, right: str, meet: bool
) -> None:
    assert (
        versions.overlaps(versions.parse_spec(left, ecosystem), versions.parse_spec(right, ecosystem)) is meet
    )


@pytest.mark.parametrize(
    ("ecosystem", "text"),
    [
        ("npm", "git+https://github.com/a/b.git"),
        ("npm", "github:acme/design#v2"),
        ("npm", "acme/design"),
        ("npm", "file:../lib"),
        ("npm", "npm:other@^1"),
        ("npm", "next"),
        ("pypi", "@ https://example.com/x.tar.gz"),
        ("pypi", ">=x"),
        ("pypi", ">=1.*"),
    ],
)
def test_a_spec_that_names_no_registry_version_is_refused(ecosystem: str, text: str) -> None:
    with pytest.raises(versions.SpecError):
        versions.parse_spec(text, ecosystem)


def test_pep440_and_semver_orderings() -> None:
    pypi = [
        versions.parse_version(v, "pypi")
        for v in ("1.0.dev1", "1.0a1", "1.0b2", "1.0rc1", "1.0", "1.0.post1", "1.1")
    ]
    assert pypi == sorted(pypi)
    npm = [
        versions.parse_version(v, "npm")
        for v in (
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0",
        )
    ]
    assert npm == sorted(npm)


RELEASES = st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4))
OPERATORS = st.sampled_from([">=", ">", "<=", "<", "=="])
EXPECTED = {
    ">=": lambda a, b: b >= a,
    ">": lambda a, b: b > a,
    "<=": lambda a, b: b <= a,
    "<": lambda a, b: b < a,
    "==": lambda a, b: b == a,
}
_reached: dict[bool, int] = {True: 0, False: 0}


@given(bound=RELEASES, candidate=RELEASES, op=OPERATORS, ecosystem=st.sampled_from(["pypi", "npm"]))
def test_a_single_comparison_agrees_with_the_order_of_release_numbers(
    bound: tuple[int, int, int], candidate: tuple[int, int, int], op: str, ecosystem: str
) -> None:
    def text(release: tuple[int, int, int]) -> str:
        return ".".join(map(str, release))

    npm_op = "" if op == "==" and ecosystem == "npm" else op
    inside = versions.contains(
        versions.parse_spec(f"{npm_op if ecosystem == 'npm' else op}{text(bound)}", ecosystem),
        versions.parse_version(text(candidate), ecosystem),
    )
    assert inside is EXPECTED[op](bound, candidate)
    _reached[inside] += 1
    event(f"{ecosystem} {op} {'inside' if inside else 'outside'}")


def test_the_comparison_property_saw_both_outcomes() -> None:
    # runs after the property above (file order): a strategy too narrow to reach both sides fails here
    assert _reached[True] >= 50 and _reached[False] >= 50, _reached


# -- the parsers --------------------------------------------------------------------------------


def test_requirements_keep_extras_markers_and_pins_and_note_what_they_skip() -> None:
    text = (
        "# comment\n"
        'requests[socks, security] == 2.25.1 ; python_version >= "3.8"  # why\n'
        "PyYAML==5.3.1 \\\n    --hash=sha256:abc\n"
        "nose (==1.3.7)\n"
        "pkg @ https://example.com/pkg.tar.gz\n"
        "-r other.txt\n-e .\n--index-url https://mirror\nhttps://example.com/x.whl\nnot a requirement!\n"
    )
    parsed = manifests.parse_requirements_txt(text, "requirements.txt")
    deps = {d.name: d for d in parsed.dependencies}
    assert deps["requests"].extras == ("socks", "security")
    assert deps["requests"].marker == 'python_version >= "3.8"' and deps["requests"].spec == "==2.25.1"
    assert deps["requests"].line == 2
    assert deps["PyYAML"].spec == "==5.3.1" and deps["nose"].spec == "==1.3.7"
    assert deps["pkg"].spec == "@ https://example.com/pkg.tar.gz"
    notes = "\n".join(parsed.notes)
    for skipped in ("includes other.txt", "editable", "pip option", "URL install", "not a requirement!"):
        assert skipped in notes
    assert len(parsed.notes) == 5


def test_pyproject_reads_project_optional_and_group_dependencies() -> None:
    text = (
        '[project]\nname = "x"\ndependencies = ["click>=8.1", "rich~=13.0"]\n'
        '[project.optional-dependencies]\npdf = ["PyMuPDF>=1.23"]\n'
        '[dependency-groups]\ntest = ["pytest>=8", {include-group = "pdf"}]\n'
        "[tool.poetry]\n"
    )
    parsed = manifests.parse_pyproject(text, "pyproject.toml")
    assert [(d.name, d.group) for d in parsed.dependencies] == [
        ("click", "main"),
        ("rich", "main"),
        ("PyMuPDF", "optional:pdf"),
        ("pytest", "group:test"),
    ]
    assert any("poetry" in n for n in parsed.notes)
    broken = manifests.parse_pyproject("[project\n", "pyproject.toml")
    assert broken.dependencies == [] and broken.notes[0].startswith("not valid TOML")


def test_package_json_reads_dependencies_and_dev_dependencies() -> None:
    text = (
        '{"dependencies": {"lodash": "4.17.20", "ui": "github:acme/ui#v2"}, '
        '"devDependencies": {"jest": "^29"}}'
    )
    parsed = manifests.parse_package_json(text, "package.json")
    assert [(d.name, d.spec, d.group) for d in parsed.dependencies] == [
        ("lodash", "4.17.20", "main"),
        ("ui", "github:acme/ui#v2", "main"),
        ("jest", "^29", "dev"),
    ]
    table = doctor.Table.load(doctor.DATA)
    ui = doctor.check(parsed.dependencies[1], table)
    assert ui.security.letter == "?" and ui.overall == "?"
    assert manifests.parse_package_json("[1]", "package.json").notes == ["the top level is not an object"]
    assert manifests.parse_package_json("{", "package.json").notes[0].startswith("not valid JSON")


def test_pypi_names_match_the_table_whatever_their_spelling() -> None:
    table = doctor.Table.load(doctor.DATA)
    for spelling in ("PyYAML", "pyyaml", "PYYAML"):
        dep = doctor.Dependency(spelling, "pypi", "==5.3.1", "r.txt")
        assert doctor.check(dep, table).security.letter == "F"
    dep = doctor.Dependency("mysql_connector.python", "pypi", "", "r.txt")
    assert doctor.check(dep, table).license.letter == "F"


# -- confinement --------------------------------------------------------------------------------

CANARY = "canary-dep-doctor-7f3a"


@pytest.fixture
def fenced(tmp_path: Path) -> Path:
    """A project beside a secret: links from inside lead to it, a relative path climbs to it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "requirements.txt").write_text(f"{CANARY}==1.0\n")
    (outside / "package.json").write_text(f'{{"dependencies": {{"{CANARY}": "1.0.0"}}}}')
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("flask>=2.3,<3\n")
    (project / "linked").symlink_to(outside, target_is_directory=True)
    (project / "requirements-link.txt").symlink_to(outside / "requirements.txt")
    (project / "node_modules" / "x").mkdir(parents=True)
    (project / "node_modules" / "x" / "package.json").write_text('{"dependencies": {"installed": "1.0.0"}}')
    return project


@pytest.mark.parametrize(
    "path",
    [
        "../outside/requirements.txt",
        "linked/requirements.txt",
        "requirements-link.txt",
        "/etc/passwd",
        "~/requirements.txt",
        "sub/../../outside/requirements.txt",
        "%2e%2e/outside/requirements.txt",
    ],
)
def test_no_path_outside_the_project_is_read(fenced: Path, path: str) -> None:
    preset, audit = doctor.build_preset(fenced)
    script = [
        ToolCall("parse_dependency_file", {"path": path}, call_id="c1"),
        ToolCall("check_dependencies", {"path": path}, call_id="c2"),
        ToolCall("done", {"answer": "x"}, call_id="c3"),
    ]
    result = preset.run(MockLLMBackend(script), "audit")
    steps = [s for s in result.steps if s.tool_call.tool != "done"]
    assert len(steps) == 2 and all(s.tool_result.error for s in steps)
    assert CANARY not in repr([s.tool_result.to_dict() for s in result.steps])
    assert audit.manifests == {} and audit.verdicts == {}


def test_finding_files_skips_links_out_and_installed_trees(fenced: Path) -> None:
    tools, audit = doctor.build_tools(fenced)
    found = tools.dispatch(ToolCall("find_dependency_files", {"path": "."}))
    assert [f["path"] for f in found.data["files"]] == ["requirements.txt"]
    assert found.data["refused_links_outside"] == ["requirements-link.txt"]
    parsed = tools.dispatch(ToolCall("parse_dependency_file", {"path": "requirements-link.txt"}))
    assert parsed.error and CANARY not in str(parsed.to_dict())
    outside = tools.dispatch(ToolCall("find_dependency_files", {"path": "../outside"}))
    assert outside.error and CANARY not in str(outside.to_dict())


def test_a_file_that_is_not_a_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secrets.txt").write_text("password")
    tools, _ = doctor.build_tools(tmp_path)
    result = tools.dispatch(ToolCall("parse_dependency_file", {"path": "secrets.txt"}))
    assert (
        result.error and "not a dependency file" in result.error and "password" not in str(result.to_dict())
    )


# -- the guard and the cartridge ----------------------------------------------------------------


def test_done_before_the_card_is_blocked_and_the_model_is_told_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("PyYAML==5.3.1\n")
    preset, audit = doctor.build_preset(tmp_path)
    script = [
        ToolCall("find_dependency_files", {}, call_id="c1"),
        ToolCall("done", {"answer": "all fine"}, call_id="c2"),
        ToolCall("check_dependencies", {"path": "requirements.txt"}, call_id="c3"),
        ToolCall("done", {"answer": "all fine"}, call_id="c4"),
        ToolCall("report_card", {}, call_id="c5"),
        ToolCall("done", {"answer": "PyYAML fails"}, call_id="c6"),
    ]
    llm = MockLLMBackend(script)
    result = preset.run(llm, "audit")
    assert result.stop_reason == "done" and result.final_answer == {"answer": "PyYAML fails"}
    told = [m.content for m in llm.calls[2].messages if m.role == "tool"][-1]
    assert "check_dependencies has not been called for: requirements.txt" in told
    told = [m.content for m in llm.calls[4].messages if m.role == "tool"][-1]
    assert "call report_card before done" in told
    assert audit.card_made


def test_check_package_answers_what_if_questions_without_changing_the_card(tmp_path: Path) -> None:
    tools, audit = doctor.build_tools(tmp_path)
    safe = tools.dispatch(
        ToolCall("check_package", {"name": "lodash", "ecosystem": "npm", "requirement": "4.17.21"})
    )
    assert safe.data["security"]["grade"] == "A"
    unsafe = tools.dispatch(
        ToolCall("check_package", {"name": "lodash", "ecosystem": "npm", "requirement": "4.17.20"})
    )
    assert unsafe.data["security"]["grade"] == "F"
    wrong = tools.dispatch(ToolCall("check_package", {"name": "x", "ecosystem": "cargo"}))
    assert wrong.error
    assert audit.all_verdicts() == []


def runtime(workspace: Path, max_steps: int | None = None) -> SimpleNamespace:
    """A stand-in for looplet.cartridges.CartridgeRuntime with the fields of the cartridge note."""
    return SimpleNamespace(
        card=None,
        folder=EXAMPLE / "skill",
        workspace=workspace,
        scripted=True,
        max_steps=max_steps,
        model=None,
        trace_dir=None,
        options={},
    )


def test_the_cartridge_builds_the_same_agent_and_prints_the_card_when_the_run_ends(
    capsys: pytest.CaptureFixture[str],
) -> None:
    entry = agent.cartridge
    preset = entry.build(runtime(DEMO, max_steps=50))
    assert preset.config.max_steps == entry.MAX_STEPS  # asks for no more than its own budget
    assert entry.build(runtime(DEMO, max_steps=5)).config.max_steps == 5
    assert preset.name == "dep-doctor" and {"find_dependency_files", "report_card", "done"} <= set(
        preset.tools.names
    )
    result = preset.run(FunctionBackend(entry.scripted_responses(runtime(DEMO))), doctor.TASK)
    assert result.stop_reason == "done"
    out = capsys.readouterr().out
    assert card_rows(out)["lodash"]["security"] == "F" and "Overall grade: D" in out


def test_the_cartridge_shares_the_commands_code_and_keeps_its_files_inside_its_folder() -> None:
    skill = EXAMPLE / "skill"
    assert Path(doctor.__file__).resolve().is_relative_to(skill)
    assert doctor.DATA.resolve().is_relative_to(skill)
    assert (
        not doctor.__name__ == "doctor" and "doctor" not in sys.modules
    )  # never on sys.path by its own name
    text = (skill / "SKILL.md").read_text()
    front = text.split("---\n")[1]
    fields = dict(line.split(": ", 1) for line in front.strip().splitlines())
    assert fields["name"] == "dep-doctor" and fields["entrypoint"] == "cartridge.py"
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", fields["name"]) and len(fields["description"]) <= 1024
    assert (skill / fields["entrypoint"]).resolve().is_relative_to(skill)


def test_the_cartridge_passes_the_skill_inspection_when_the_loader_exists() -> None:
    skills = pytest.importorskip(
        "looplet.skills", reason="looplet.skills is not built yet (issue 10, item 3)"
    )
    card = skills.inspect(EXAMPLE / "skill")
    assert not card.problems and card.is_cartridge and card.name == "dep-doctor"


def test_looplet_run_runs_the_cartridge_on_a_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from looplet.cli import main as looplet

    project = tmp_path / "project"
    shutil.copytree(DEMO, project)
    code = looplet(
        [
            "run",
            str(EXAMPLE / "skill"),
            "Audit the dependencies",
            "--scripted",
            "--workspace",
            str(project),
            "--no-trace",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert card_rows(out)["PyYAML"]["security"] == "F" and "Overall grade: D" in out
    assert sorted(p.name for p in project.iterdir()) == sorted(p.name for p in DEMO.iterdir())


def test_the_cartridges_helper_code_runs_from_source_never_from_planted_bytecode(tmp_path: Path) -> None:
    """The digest leaves ``__pycache__`` out because looplet never runs bytecode from a cartridge: a
    trusted copy with a ``.pyc`` planted later still runs its ``doctor`` package from source."""
    from looplet.cartridges import open_cartridge
    from looplet.skills import TrustList, inspect

    folder = tmp_path / "skill"
    shutil.copytree(EXAMPLE / "skill", folder, ignore=shutil.ignore_patterns("__pycache__"))
    card = inspect(folder)
    canary = tmp_path / "canary"
    source = folder / "doctor" / "__init__.py"
    code = compile(source.read_text() + f"\nopen({str(canary)!r}, 'w').write('ran')\n", str(source), "exec")
    info = source.stat()
    header = importlib.util.MAGIC_NUMBER + bytes(4)
    header += (int(info.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + info.st_size.to_bytes(4, "little")
    planted = Path(importlib.util.cache_from_source(str(source)))
    planted.parent.mkdir()
    planted.write_bytes(header + marshal.dumps(code))
    assert inspect(folder).digest == card.digest  # the plant does not change what was trusted
    opened = open_cartridge(folder, trust=TrustList([(folder, card.digest)]))
    assert not canary.exists()
    assert opened.module.doctor.__name__ == opened.module.__name__ + ".doctor"
