"""The cartridge verbs of the command line (issue 10 item 4): run, blueprint, export-code, package,
wrap-claude-skill and list-bundles. Each: success, --help, bad input (one line, exit 2, no traceback)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from looplet.cli import main
from looplet.skills import inspect

DATA = Path(__file__).parent / "data" / "cartridges"
ROOT = Path(__file__).resolve().parent.parent
CARTRIDGE_VERBS = ["run", "blueprint", "export-code", "package", "wrap-claude-skill", "list-bundles"]
_TIME = re.compile(r"\[\d+(?:\.\d+)?(?:ms|s)\]")


def copy_of(name: str, where: Path) -> Path:
    target = where / name
    shutil.copytree(DATA / name, target)
    return target


def one_line_refusal(capsys: pytest.CaptureFixture[str], verb: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"looplet {verb}: ")
    return lines[0]


def looplet(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "looplet", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def steps_of(output: str) -> list[str]:
    """The step lines of a run's output, times left out."""
    return [_TIME.sub("[T]", line) for line in output.splitlines() if line.startswith("#")]


@pytest.mark.parametrize("verb", CARTRIDGE_VERBS)
def test_every_cartridge_verb_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: looplet {verb} ")


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["run"], "name the cartridge and the task"),
        (["run", "DIR"], "name the cartridge and the task"),
        (["blueprint"], "name the cartridge's folder"),
        (["export-code", "DIR"], "name the cartridge and the file to write"),
        (["package", "m:f"], "name the factory and the folder"),
        (["wrap-claude-skill", "SRC"], "name the skill folder and the cartridge folder"),
        (["list-bundles"], "name at least one folder"),
    ],
)
def test_a_missing_argument_is_one_line_and_exit_2(
    argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert reason in one_line_refusal(capsys, argv[0])


@pytest.mark.parametrize("verb", ["run", "blueprint", "export-code"])
def test_a_folder_that_is_not_a_cartridge_is_one_line_and_exit_2(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"run": ["task", "--scripted"], "blueprint": [], "export-code": [str(tmp_path / "o.py")]}[verb]
    assert main([verb, str(tmp_path / "nowhere"), *extra]) == 2
    assert "no SKILL.md there" in one_line_refusal(capsys, verb)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "SKILL.md").write_text("---\nname: plain\ndescription: Only text.\n---\nBody.\n")
    assert main([verb, str(plain), *extra]) == 2
    assert "names no entrypoint" in one_line_refusal(capsys, verb)
    assert main([verb, str(DATA / "escape"), *extra]) == 2
    assert "climbs out with '..'" in one_line_refusal(capsys, verb)
    assert not (tmp_path / "o.py").exists()


# -- run ------------------------------------------------------------------------------------------


def test_run_prints_a_line_per_step_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = copy_of("greeter", tmp_path)
    code = main(
        ["run", str(folder), "Greet Alice and Bob", "--scripted", "--workspace", str(tmp_path / "ws")]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert steps_of(out) == [
        "#1 ✓ greet(name='Alice') → greeting: 'Hello, Alice!' [T]",
        "#2 ✓ greet(name='Bob') → greeting: 'Hello, Bob!' [T]",
        "#3 ✓ done(answer='Greeted Alice and Bob.') → answer: 'Greeted Alice and Bob.' [T]",
    ]
    assert "stopped: done\n3 steps · 3 model calls\nanswer: Greeted Alice and Bob.\n" in out
    (trace,) = (tmp_path / "ws" / ".looplet" / "runs").iterdir()  # recorded by default, in the workspace
    assert f"trace: {trace}" in out
    assert main(["show", str(trace)]) == 0 and "greet(name='Alice')" in capsys.readouterr().out


def test_run_records_in_the_trace_dir_or_nowhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = copy_of("greeter", tmp_path)
    base = ["run", str(folder), "Greet", "--scripted", "--workspace", str(tmp_path / "ws")]
    assert main([*base, "--trace-dir", str(tmp_path / "traces")]) == 0
    assert len(list((tmp_path / "traces").iterdir())) == 1
    assert main([*base, "--no-trace"]) == 0
    assert "trace:" not in capsys.readouterr().out.split("Greeted Alice and Bob.\n")[-1]
    assert not (tmp_path / "ws" / ".looplet").exists()
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--no-trace", "--trace-dir", str(tmp_path)])
    assert exit_info.value.code == 2


def test_run_caps_the_cartridges_steps_and_exits_1_when_it_does_not_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_of("greeter", tmp_path)
    code = main(
        [
            "run",
            str(folder),
            "Greet",
            "--scripted",
            "--no-trace",
            "--max-steps",
            "1",
            "--workspace",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert len(steps_of(out)) == 1 and "stopped: max_steps" in out


@pytest.mark.parametrize("bad", ["0", "-1", "many"])
def test_run_refuses_a_bad_step_cap(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(DATA / "greeter"), "t", "--max-steps", bad])
    assert exit_info.value.code == 2
    assert "argument --max-steps" in capsys.readouterr().err


def test_run_without_a_model_configured_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    folder = copy_of("greeter", tmp_path)
    assert main(["run", str(folder), "Greet", "--no-trace", "--workspace", str(tmp_path)]) == 2
    assert "--scripted" in one_line_refusal(capsys, "run")


def test_run_reports_a_cartridge_that_fails_to_build_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "SKILL.md").write_text("---\nname: broken\ndescription: Fails.\nentrypoint: agent.py\n---\n")
    (folder / "agent.py").write_text("def build(runtime):\n    raise KeyError('config')\n")
    assert main(["run", str(folder), "t", "--scripted", "--workspace", str(tmp_path / "ws")]) == 2
    assert "build(runtime) failed: KeyError" in one_line_refusal(capsys, "run")
    (folder / "agent.py").write_text("raise ImportError('no such thing')\n")
    assert main(["run", str(folder), "t", "--scripted", "--workspace", str(tmp_path / "ws")]) == 2
    assert "failed on import: ImportError: no such thing" in one_line_refusal(capsys, "run")


# -- blueprint ------------------------------------------------------------------------------------


def test_blueprint_without_trust_shows_the_card_and_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["blueprint", str(DATA / "greeter"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["built"] is False and "--trust" in data["note"]
    assert data["card"]["name"] == "greeter" and "tools" not in data


def test_blueprint_with_trust_is_complete_and_stable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    for ws in (None, tmp_path / "ws"):
        argv = ["blueprint", str(DATA / "greeter"), "--trust", "--json"]
        assert main(argv + ([] if ws is None else ["--workspace", str(ws)])) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    data = json.loads(outputs[0])
    assert data["built"] is True and [t["name"] for t in data["tools"]] == ["done", "greet"]
    assert main(["blueprint", str(DATA / "greeter"), "--trust"]) == 0
    text = capsys.readouterr().out
    assert "tools (2):\n  done(answer?: str, summary?: str)  [done]" in text
    assert "  greet(name: str)\n      Greet someone by name." in text
    assert "hooks (1, in run order):\n  1. $CARTRIDGE_MODULE.CountGreetings [post_dispatch]" in text


# -- export-code ----------------------------------------------------------------------------------


def test_exported_code_runs_without_the_bundle_and_takes_the_same_steps(tmp_path: Path) -> None:
    folder = copy_of("greeter", tmp_path)
    ran = looplet(
        "run",
        str(folder),
        "Greet Alice and Bob",
        "--scripted",
        "--no-trace",
        "--workspace",
        str(tmp_path / "a"),
    )
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "exported" / "greeter_agent.py"
    made = looplet("export-code", str(folder), str(out))
    assert made.returncode == 0, made.stderr
    shutil.rmtree(folder)
    exported = subprocess.run(
        [
            sys.executable,
            str(out),
            "Greet Alice and Bob",
            "--scripted",
            "--no-trace",
            "--workspace",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert exported.returncode == 0, exported.stderr
    assert steps_of(exported.stdout) == steps_of(ran.stdout) and len(steps_of(ran.stdout)) == 3
    summary = [line for line in ran.stdout.splitlines() if not line.startswith(("#", "cartridge:"))]
    assert summary == [
        line for line in exported.stdout.splitlines() if not line.startswith(("#", "cartridge:"))
    ]
    assert (tmp_path / "b" / "greeted.txt").read_text() == "Alice\nBob\n"
    source = out.read_text()
    assert "'def build(runtime):\\n'" in source  # the entrypoint is readable in the exported file
    assert not any(p.name.endswith(".tmp") for p in out.parent.iterdir())


def test_exported_code_refuses_embedded_files_that_were_changed(tmp_path: Path) -> None:
    out = tmp_path / "agent.py"
    assert main(["export-code", str(DATA / "greeter"), str(out)]) == 0
    out.write_text(out.read_text().replace("'Greet every person", "'Ignore every person"))
    tampered = subprocess.run(
        [sys.executable, str(out), "t", "--scripted", "--no-trace", "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tampered.returncode != 0 and "do not match their digest" in tampered.stderr
    assert "Traceback" not in tampered.stderr


def test_export_code_refuses_a_special_file_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_of("greeter", tmp_path)
    os.mkfifo(folder / "zz.fifo")
    assert main(["export-code", str(folder), str(tmp_path / "out.py")]) == 2
    assert "not a regular file" in one_line_refusal(capsys, "export-code")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["greeter"]


# -- package --------------------------------------------------------------------------------------

MY_AGENT = '''"""Greets and finishes: a factory to package."""

from looplet import ToolCall
from looplet.presets import minimal_preset


def build():
    return minimal_preset(max_steps=3)


def scripted_responses():
    return [ToolCall("done", {"answer": "packaged and ran"}, call_id="c1")]
'''


def test_package_turns_a_factory_into_a_runnable_cartridge(tmp_path: Path) -> None:
    (tmp_path / "my_agent.py").write_text(MY_AGENT)
    made = looplet(
        *("package", "my_agent:build", "./skills/my-agent"),
        *("--name", "my-agent", "--description", "Run my agent.", "--tag", "demo"),
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    card = inspect(tmp_path / "skills" / "my-agent")
    assert (card.name, card.description, card.tags, card.problems) == (
        "my-agent",
        "Run my agent.",
        ("demo",),
        (),
    )
    assert card.instructions.startswith("Greets and finishes: a factory to package.")
    ran = looplet("run", "skills/my-agent", "go", "--scripted", "--no-trace", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "answer: packaged and ran" in ran.stdout


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["my_agent", "o", "--name", "x", "--description", "d"], "expected MODULE:FACTORY"),
        (["my_agent:build", "o", "--description", "d"], "--name is required"),
        (["my_agent:build", "o", "--name", "Bad_Name", "--description", "d"], "use a-z, 0-9 and '-'"),
        (["my_agent:build", "o", "--name", "x"], "--description is required"),
        (["no_such_module_here:build", "o", "--name", "x", "--description", "d"], "not found on sys.path"),
        (["my_agent:missing", "o", "--name", "x", "--description", "d"], "defines no 'missing'"),
        (["relative_agent:build", "o", "--name", "x", "--description", "d"], "uses a relative import"),
        (["my_agent:build", "taken", "--name", "x", "--description", "d"], "already exists"),
    ],
)
def test_package_refuses_bad_input_in_one_line_and_writes_nothing(
    argv: list[str],
    reason: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "my_agent.py").write_text(MY_AGENT)
    (tmp_path / "relative_agent.py").write_text("from . import sibling\n\ndef build(runtime):\n    pass\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["package", *argv]) == 2
    assert reason in one_line_refusal(capsys, "package")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# -- wrap-claude-skill ----------------------------------------------------------------------------


def claude_skill(where: Path) -> Path:
    skill = where / "claude-skills" / "pdf"
    (skill / "scripts").mkdir(parents=True)
    (skill / "SKILL.md").write_text(
        "---\nname: pdf\ndescription: Extract text from PDF files.\nlicense: Apache-2.0\n---\n"
        "# PDF\nRun scripts/extract.py on the file. See reference.md for the options.\n"
    )
    (skill / "reference.md").write_text("Options: --pages N\n")
    (skill / "scripts" / "extract.py").write_text("print('text')\n")
    return skill


def test_wrap_claude_skill_keeps_the_skills_files_and_instructions_and_runs(tmp_path: Path) -> None:
    claude_skill(tmp_path)
    made = looplet("wrap-claude-skill", "./claude-skills/pdf", "./skills/pdf", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    out = tmp_path / "skills" / "pdf"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "SKILL.md", "looplet_entry.py", "reference.md", "scripts/extract.py",
    ]  # fmt: skip
    card = inspect(out)
    assert card.problems == () and card.tags == ("claude-skill",) and card.metadata["license"] == "Apache-2.0"
    assert card.instructions == inspect(tmp_path / "claude-skills" / "pdf").instructions
    ran = looplet(
        "run", "skills/pdf", "what can you do?", "--scripted", "--no-trace", "--workspace", "ws", cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    assert (
        "read_skill_file(path='SKILL.md')" in ran.stdout and "answer: The pdf skill is ready." in ran.stdout
    )


def test_a_wrapped_skill_reads_but_never_writes_and_asks_before_scripts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from looplet import MockLLMBackend, ToolCall
    from looplet.cartridges import make_runtime, open_cartridge

    claude_skill(tmp_path)
    assert main(["wrap-claude-skill", str(tmp_path / "claude-skills" / "pdf"), str(tmp_path / "pdf")]) == 0
    cartridge = open_cartridge(tmp_path / "pdf", trust=True)
    runtime = make_runtime(cartridge.card, workspace=tmp_path / "ws")
    preset = cartridge.build(runtime)
    assert sorted(preset.tools.names) == [
        *("done", "glob", "grep", "list_dir", "read"),
        *("read_skill_file", "run_skill_script", "skill_files", "think"),
    ]
    assert preset.system_prompt is not None and "Run scripts/extract.py on the file." in preset.system_prompt
    script = [
        ToolCall("run_skill_script", {"script": "scripts/extract.py", "args": ["x.pdf"]}, call_id="c1"),
        ToolCall("read_skill_file", {"path": "../../etc/passwd"}, call_id="c2"),
        ToolCall("done", {"answer": "x"}, call_id="c3"),
    ]
    result = preset.run(MockLLMBackend(script), task="t")  # stdin is not a terminal here: asking means no
    run_script, escape = result.steps[0].tool_result, result.steps[1].tool_result
    assert run_script.error and "not approved" in run_script.error
    assert escape.error and "'..'" in escape.error


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("no-manifest", "no SKILL.md there"),
        ("no-description", "the front matter has no description"),
        ("entrypoint", "already names an entrypoint"),
        ("yaml-tag", "a tag (!)"),
        ("symlink", "a symbolic link"),
        ("taken", "already exists"),
    ],
)
def test_wrap_claude_skill_refuses_bad_input_and_leaves_nothing(
    setup: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skill = claude_skill(tmp_path)
    manifest = skill / "SKILL.md"
    if setup == "no-manifest":
        manifest.unlink()
    elif setup == "no-description":
        manifest.write_text("---\nname: pdf\n---\nBody\n")
    elif setup == "entrypoint":
        manifest.write_text("---\nname: pdf\ndescription: d\nentrypoint: x.py\n---\n")
    elif setup == "yaml-tag":
        manifest.write_text("---\nname: !!python/object:os.system pdf\ndescription: d\n---\n")
    elif setup == "symlink":  # found after the other files were copied: a failure midway
        (skill / "zz-link").symlink_to(tmp_path)
    out = tmp_path / "out" / "pdf"
    if setup == "taken":
        out.mkdir(parents=True)
        (out / "mine").write_text("x")
    else:
        (tmp_path / "out").mkdir()
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert main(["wrap-claude-skill", str(skill), str(out)]) == 2
    assert reason in one_line_refusal(capsys, "wrap-claude-skill")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before


def test_wrap_claude_skill_refuses_an_output_inside_the_skill_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The copy would walk into the folder it is writing (a copy of a copy of ...): refused up front."""
    skill = claude_skill(tmp_path)
    before = sorted(p.relative_to(skill).as_posix() for p in skill.rglob("*"))
    assert main(["wrap-claude-skill", str(skill), str(skill / "wrapped")]) == 2
    assert "inside the skill folder" in one_line_refusal(capsys, "wrap-claude-skill")
    assert sorted(p.relative_to(skill).as_posix() for p in skill.rglob("*")) == before


# -- list-bundles ---------------------------------------------------------------------------------


def test_list_bundles_lists_cartridges_without_importing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modules_before = set(sys.modules)
    assert main(["list-bundles", str(DATA), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    listed = [(r["name"], r["status"]) for r in rows]
    assert listed == sorted(listed) and ("canary", "ok") in listed and ("greeter", "ok") in listed
    assert all(status == "ok" for _, status in listed)  # the invalid fixtures only with --include-invalid
    greeter = next(r for r in rows if r["name"] == "greeter")
    assert greeter["description"] == "Greet the people a task names, then finish."
    assert greeter["path"] == str((DATA / "greeter").resolve())
    assert not any(name.startswith("looplet_cartridge_canary") for name in set(sys.modules) - modules_before)
    assert main(["list-bundles", str(DATA), "--json", "--include-invalid"]) == 0
    rows = json.loads(capsys.readouterr().out)
    escape = next(r for r in rows if r["name"] == "escape")
    assert escape["status"] == "invalid" and "climbs out" in escape["problems"][0]


def test_list_bundles_marks_two_cartridges_with_one_name_invalid_and_keeps_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy_of("greeter", tmp_path / "a")
    copy_of("greeter", tmp_path / "b")
    copy_of("canary", tmp_path / "c")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "SKILL.md").write_text("---\nname: plain\ndescription: A skill.\n---\n")
    assert main(["list-bundles", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert (
        captured.out.startswith("canary  [ok]")
        and "greeter" not in captured.out
        and "plain" not in captured.out
    )
    assert "2 invalid cartridge(s) not shown" in captured.err
    assert main(["list-bundles", str(tmp_path / "a"), str(tmp_path / "b"), "--include-invalid"]) == 0
    out = capsys.readouterr().out
    assert out.count("[invalid]") == 2
    assert f"the name 'greeter' is also used by {(tmp_path / 'b' / 'greeter').resolve()}" in out


def test_list_bundles_refuses_a_root_that_is_not_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list-bundles", str(tmp_path / "missing")]) == 2
    assert "not a folder" in one_line_refusal(capsys, "list-bundles")


# -- text from a folder on the terminal -----------------------------------------------------------

#: A folder's own words that a terminal would obey: clear the screen, hide text, a title, a bell.
_ESCAPES = "\x1b[2J", "\x1b[8m", "\x1b]0;pwned\x07", "\x9b31m"


def hostile_cartridges(where: Path) -> Path:
    """Two cartridges in folders whose names hold an escape: one whose instructions and build error
    hold escapes, one whose description and tags do (an invalid manifest, listed with its problems)."""
    body = "".join(f"line {n}: {e} hidden\n" for n, e in enumerate(_ESCAPES))
    for name, front in [
        ("hostile", "description: A cartridge.\n"),
        ("invalid", 'description: "ok\\e[2Jcleared"\ntags: ["\\e[31mred"]\n'),
    ]:
        folder = where / f"{name}\x1b[2J"
        folder.mkdir(parents=True)
        (folder / "SKILL.md").write_text(f"---\nname: {name}\n{front}entrypoint: agent.py\n---\n{body}")
        (folder / "agent.py").write_text(
            "def build(runtime):\n    raise RuntimeError('failed \\x1b]0;pwned\\x07 \\x9b31m')\n"
        )
    return where / "hostile\x1b[2J"


@pytest.mark.parametrize(
    "argv",
    [
        ["list-bundles", "{root}", "--include-invalid"],
        ["list-bundles", "{root}", "--include-invalid", "--json"],
        ["blueprint", "{folder}"],
        ["blueprint", "{folder}", "--json"],
        ["blueprint", "{folder}", "--trust"],
        ["blueprint", "{root}/invalid\x1b[2J"],
        ["run", "{folder}", "a task", "--scripted", "--no-trace", "--workspace", "{root}/ws"],
    ],
)
def test_a_folders_text_reaches_the_terminal_without_control_characters(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = hostile_cartridges(tmp_path / "root")
    main([a.format(root=tmp_path / "root", folder=folder) for a in argv])
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "hostile" in shown or "invalid" in shown  # a cartridge was found and talked about
    assert "Traceback" not in shown
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", shown), repr(shown)


# -- the seed README's commands -------------------------------------------------------------------


def test_the_readmes_cartridge_commands_run_as_written(tmp_path: Path) -> None:
    """The README's "Runnable cartridges" commands, with its /tmp paths moved under tmp_path."""
    demo, exported = tmp_path / "demo", tmp_path / "coder_agent.py"
    listed = looplet("list-bundles", "examples/coder", "--json", cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    assert [r["status"] for r in json.loads(listed.stdout)] == ["ok"]
    ran = looplet(
        "run", "examples/coder/skill", "Create a tiny add function with tests", "--scripted",
        "--workspace", str(demo), cwd=ROOT,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    made = looplet("export-code", "examples/coder/skill", str(exported), cwd=ROOT)
    assert made.returncode == 0, made.stderr
    (tmp_path / "my_agent.py").write_text(MY_AGENT)
    claude_skill(tmp_path)
    packaged = looplet(
        *("package", "my_agent:build", "./skills/my-agent"),
        *("--name", "my-agent", "--description", "Run my agent."),
        cwd=tmp_path,
    )
    assert packaged.returncode == 0, packaged.stderr
    wrapped = looplet("wrap-claude-skill", "./claude-skills/pdf", "./skills/pdf", cwd=tmp_path)
    assert wrapped.returncode == 0, wrapped.stderr
