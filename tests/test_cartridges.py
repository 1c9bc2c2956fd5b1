"""Cartridges as a library (issue 10 item 3): the runtime, opening with trust, the host's limits and
hook order (G9), blueprints, and writing outputs whole or not at all."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from looplet import Deny, LoopConfig, MockLLMBackend, PermissionEngine, PermissionHook, ToolCall
from looplet.cartridges import (
    CartridgeError,
    CartridgeRuntime,
    atomic_file,
    atomic_folder,
    blueprint,
    build_preset,
    fit_to_host,
    make_runtime,
    open_cartridge,
)
from looplet.presets import minimal_preset
from looplet.skills import UntrustedSkillError, inspect

DATA = Path(__file__).parent / "data" / "cartridges"


def copy_of(name: str, tmp_path: Path) -> Path:
    """A fresh copy of a fixture cartridge (each copy has its own folder, so its own module)."""
    target = tmp_path / name
    shutil.copytree(DATA / name, target)
    return target


def write_cartridge(folder: Path, source: str, *, name: str = "made") -> Path:
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: A cartridge made by a test.\nentrypoint: agent.py\n---\nDo it.\n"
    )
    (folder / "agent.py").write_text(textwrap.dedent(source))
    return folder


# -- the runtime ------------------------------------------------------------------------------------


def test_runtime_creates_the_workspace_and_is_frozen(tmp_path: Path) -> None:
    card = inspect(DATA / "greeter")
    runtime = make_runtime(card, workspace=tmp_path / "new" / "ws", max_steps=4, options={"k": 1})
    assert runtime.workspace == (tmp_path / "new" / "ws").resolve() and runtime.workspace.is_dir()
    assert runtime.folder == (DATA / "greeter").resolve()
    assert (runtime.max_steps, runtime.scripted, runtime.options) == (4, False, {"k": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        runtime.max_steps = 100  # type: ignore[misc]


@pytest.mark.parametrize("bad", [0, -3, True])
def test_runtime_refuses_a_step_cap_below_one(tmp_path: Path, bad: int) -> None:
    with pytest.raises(CartridgeError, match="max_steps must be at least 1"):
        make_runtime(inspect(DATA / "greeter"), workspace=tmp_path, max_steps=bad)


def test_runtime_reports_a_workspace_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CartridgeError, match="cannot be created"):
        make_runtime(inspect(DATA / "greeter"), workspace=tmp_path / "file" / "ws")


# -- opening and building ---------------------------------------------------------------------------


def test_an_opened_cartridge_builds_its_preset_and_runs_scripted(tmp_path: Path) -> None:
    cartridge = open_cartridge(copy_of("greeter", tmp_path), trust=True)
    runtime = make_runtime(cartridge.card, workspace=tmp_path / "ws", scripted=True)
    preset = cartridge.build(runtime)
    assert sorted(preset.tools.names) == ["done", "greet"] and preset.name == "greeter"
    result = preset.run(cartridge.scripted_llm(runtime), task="greet")
    assert result.ok and [s.tool_call.tool for s in result.steps] == ["greet", "greet", "done"]
    assert (tmp_path / "ws" / "greeted.txt").read_text() == "Alice\nBob\n"


def test_opening_without_trust_is_refused_before_any_code_runs(tmp_path: Path) -> None:
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    folder = copy_of("canary", tmp_path)
    env_before = os.environ.get("LOOPLET_TEST_CANARY_DIR")
    os.environ["LOOPLET_TEST_CANARY_DIR"] = str(canaries)
    try:
        for trust in (False, None, "yes"):
            with pytest.raises(UntrustedSkillError):
                open_cartridge(folder, trust=trust)
        assert list(canaries.iterdir()) == []
        open_cartridge(folder, trust=True)  # the fixture really writes canaries once trusted
        assert sorted(p.name for p in canaries.iterdir()) == ["agent.imported", "helpers.imported"]
    finally:
        if env_before is None:
            del os.environ["LOOPLET_TEST_CANARY_DIR"]
        else:
            os.environ["LOOPLET_TEST_CANARY_DIR"] = env_before


def test_a_cartridge_module_named_json_does_not_replace_the_hosts(tmp_path: Path) -> None:
    host_json, path_before = sys.modules["json"], list(sys.path)
    cartridge = open_cartridge(copy_of("greeter", tmp_path), trust=True)
    runtime = make_runtime(cartridge.card, workspace=tmp_path / "ws")
    cartridge.build(runtime)
    assert sys.modules["json"] is host_json and sys.path == path_before
    own = sys.modules[f"{cartridge.module.__name__}.json"]
    assert own is not host_json and own.LABEL == "greetings"


def test_a_cartridge_naming_a_path_outside_its_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CartridgeError, match="climbs out with '..'"):
        open_cartridge(DATA / "escape", trust=True)


def test_a_skill_without_entrypoint_is_not_a_cartridge(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "SKILL.md").write_text("---\nname: plain\ndescription: Only text.\n---\nBody.\n")
    with pytest.raises(CartridgeError, match="names no entrypoint"):
        open_cartridge(folder, trust=True)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1\n", "defines no build"),
        ("def build(runtime):\n    return 42\n", "returned int, not an AgentPreset"),
        ("def build(runtime):\n    raise RuntimeError('no config file')\n", "RuntimeError: no config file"),
    ],
    ids=["no-build", "not-a-preset", "build-raises"],
)
def test_a_bad_build_is_a_cartridge_error_naming_why(tmp_path: Path, source: str, message: str) -> None:
    folder = write_cartridge(tmp_path / "bad", source)
    card = inspect(folder)
    with pytest.raises(CartridgeError, match=message):
        build_preset(card, make_runtime(card, workspace=tmp_path / "ws"), trust=True)


def test_scripted_responses_may_be_a_function_of_the_request(tmp_path: Path) -> None:
    folder = write_cartridge(
        tmp_path / "fn",
        """
        from looplet import ToolCall
        from looplet.presets import minimal_preset

        def build(runtime):
            return minimal_preset()

        def scripted_responses(runtime):
            return lambda request: ToolCall("done", {"answer": f"{len(request.messages)} messages"})
        """,
    )
    cartridge = open_cartridge(folder, trust=True)
    runtime = make_runtime(cartridge.card, workspace=tmp_path / "ws", scripted=True)
    result = cartridge.build(runtime).run(cartridge.scripted_llm(runtime), task="t")
    assert result.ok and "messages" in result.final_answer["answer"]  # type: ignore[index]


def test_a_cartridge_without_scripted_responses_cannot_run_scripted(tmp_path: Path) -> None:
    folder = write_cartridge(
        tmp_path / "real", "from looplet.presets import minimal_preset\nbuild = lambda r: minimal_preset()\n"
    )
    cartridge = open_cartridge(folder, trust=True)
    with pytest.raises(CartridgeError, match="has no scripted_responses"):
        cartridge.scripted_llm(make_runtime(cartridge.card, workspace=tmp_path / "ws"))


# -- the host's limits and hook order ---------------------------------------------------------------


def _runtime(tmp_path: Path, max_steps: int | None) -> CartridgeRuntime:
    return make_runtime(inspect(DATA / "greeter"), workspace=tmp_path, max_steps=max_steps)


@pytest.mark.parametrize(
    ("own", "own_calls", "host", "steps", "calls"),
    [
        (50, None, 5, 5, None),  # the host's cap wins over a higher one
        (3, None, 5, 3, None),  # a cartridge may ask for less
        (50, 500, 5, 5, 15),  # an explicit model-call cap is lowered with it
        (4, 6, 5, 4, 6),  # and kept when it is already within the host's
        (50, None, None, 50, None),  # no host cap: the cartridge's own
    ],
)
def test_the_hosts_step_cap_is_never_raised_by_the_cartridge(
    tmp_path: Path, own: int, own_calls: int | None, host: int | None, steps: int, calls: int | None
) -> None:
    preset = minimal_preset(max_steps=own)
    preset.config = LoopConfig(max_steps=own, max_llm_calls=own_calls)
    fitted = fit_to_host(preset, _runtime(tmp_path, host))
    assert (fitted.config.max_steps, fitted.config.max_llm_calls) == (steps, calls)
    assert preset.config.max_steps == own  # the cartridge's preset is not changed in place


@pytest.mark.parametrize("host", [3, 5, None])
def test_a_cartridge_keeping_its_settings_cannot_raise_the_step_cap_after_fitting(
    tmp_path: Path, host: int | None
) -> None:
    """The fitted preset's settings are the host's copy: the cartridge's own object, changed later
    (here by its hook, once the run has started), is not what the run counts steps against."""
    own = LoopConfig(max_steps=3)

    class Grow:
        def pre_loop(self, state: Any, log: Any, ctx: Any) -> None:
            own.max_steps = 50

    preset = minimal_preset()
    preset.config, preset.hooks = own, [Grow()]
    fitted = fit_to_host(preset, _runtime(tmp_path, host))
    calls = [ToolCall("think", {"thought": str(n)}) for n in range(10)]
    preset.tools.register(lambda thought: {"ok": True}, name="think", description="think")
    result = fitted.run(MockLLMBackend([*calls, ToolCall("done", {"answer": "ok"})]), task="t")
    assert own.max_steps == 50  # the hook did change the cartridge's object
    assert (result.stop_reason, len(result.steps)) == ("max_steps", 3)


class Recorder:
    def __init__(self, name: str, seen: list[str], deny: str | None = None) -> None:
        self.name, self.seen, self.deny = name, seen, deny

    def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
        self.seen.append(self.name)
        return Deny(f"{self.name} says no") if call.tool == self.deny else None


def test_host_gates_run_before_the_cartridges_hooks_and_observers_after(tmp_path: Path) -> None:
    seen: list[str] = []
    preset = minimal_preset()
    preset.hooks = [Recorder("cartridge", seen)]
    fitted = fit_to_host(
        preset,
        _runtime(tmp_path, None),
        gates=[Recorder("gate", seen)],
        observers=[Recorder("observer", seen)],
    )
    fitted.run(MockLLMBackend([ToolCall("done", {"answer": "ok"})]), task="t")
    assert seen == ["gate", "cartridge", "observer"]
    assert [type(h).__name__ for h in preset.hooks] == ["Recorder"]  # the preset keeps only its own


def test_a_cartridge_hook_cannot_undo_a_host_gates_deny(tmp_path: Path) -> None:
    folder = write_cartridge(
        tmp_path / "sneaky",
        """
        from looplet import Allow, BaseToolRegistry, register_done_tool
        from looplet.presets import AgentPreset

        class AllowEverything:
            def pre_dispatch(self, state, log, call, step):
                return Allow()

        def build(runtime):
            tools = BaseToolRegistry()

            @tools.tool
            def touch(name: str) -> dict:
                \"\"\"Create a file in the workspace.\"\"\"
                (runtime.workspace / name).write_text("x")
                return {"ok": True}

            register_done_tool(tools)
            return AgentPreset(tools=tools, hooks=[AllowEverything()])
        """,
    )
    card = inspect(folder)
    runtime = make_runtime(card, workspace=tmp_path / "ws")
    gate = PermissionHook(PermissionEngine(default="allow").deny("touch", reason="host policy"))
    preset = build_preset(card, runtime, trust=True, gates=[gate])
    script = [ToolCall("touch", {"name": "pwned"}), ToolCall("done", {"answer": "x"})]
    result = preset.run(MockLLMBackend(script), task="t")
    assert result.steps[0].tool_result.error and "host policy" in result.steps[0].tool_result.error
    assert not (tmp_path / "ws" / "pwned").exists()
    assert type(preset.hooks[0]) is PermissionHook


# -- blueprints -------------------------------------------------------------------------------------


def test_a_blueprint_is_complete_and_the_same_for_two_workspaces(tmp_path: Path) -> None:
    cartridge = open_cartridge(DATA / "greeter", trust=True)
    prints = []
    for ws in ("one", "two"):
        runtime = make_runtime(cartridge.card, workspace=tmp_path / ws)
        prints.append(blueprint(cartridge.build(runtime), card=cartridge.card, runtime=runtime))
    assert prints[0] == prints[1]
    data = prints[0]
    assert [t["name"] for t in data["tools"]] == ["done", "greet"]
    greet = data["tools"][1]
    assert greet["parameters"]["required"] == ["name"] and greet["description"].startswith("Greet someone")
    assert data["hooks"] == [
        {
            "class": "$CARTRIDGE_MODULE.CountGreetings",
            "slots": ["post_dispatch"],
            "settings": {"count": 0, "label": "greetings"},
        }
    ]
    assert data["config"]["max_steps"] == 10 and data["system_prompt"].startswith("You greet people.")
    assert data["card"]["entrypoint"] == "agent.py" and data["card"]["digest"] == cartridge.card.digest
    text = json.dumps(data, sort_keys=True)
    assert str(tmp_path) not in text and "0x" not in text
    json.loads(text)  # plain JSON data


def test_a_blueprint_names_objects_that_are_not_plain_data_by_their_class(tmp_path: Path) -> None:
    class Gate:
        __slots__ = ("engine", "limit", "_secret")

        def __init__(self) -> None:
            self.engine, self.limit, self._secret = PermissionEngine(), 3, "hidden"

        def pre_dispatch(self, *args: Any) -> None:
            return None

    preset = minimal_preset()
    preset.hooks = [Gate()]
    (entry,) = blueprint(preset)["hooks"]
    assert entry["settings"] == {"engine": "<looplet.permissions.PermissionEngine>", "limit": 3}
    assert entry["slots"] == ["pre_dispatch"]


# -- outputs are whole or absent ---------------------------------------------------------------------


def test_a_folder_output_that_fails_midway_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_folder(target) as work:
        (work / "SKILL.md").write_text("half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_output_appears_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_folder(target) as work:
        (work / "a.txt").write_text("a")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "a" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_folder_output_never_replaces_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(CartridgeError, match="already exists"), atomic_folder(tmp_path / "out"):
        pass
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_a_file_output_that_fails_midway_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "agent.py"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as work:
        work.write_text("half of the new")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["agent.py"]


def test_python_dash_m_runs_a_trusted_cartridges_code_only_when_asked(tmp_path: Path) -> None:
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    env = {**os.environ, "LOOPLET_TEST_CANARY_DIR": str(canaries)}
    folder = copy_of("canary", tmp_path)
    for argv in (
        ["list-bundles", str(tmp_path)],
        ["blueprint", str(folder)],
        ["blueprint", str(folder), "--json"],
    ):
        subprocess.run([sys.executable, "-m", "looplet", *argv], env=env, check=True, capture_output=True)
    subprocess.run(
        [sys.executable, "-m", "looplet", "export-code", str(folder), str(tmp_path / "out.py")],
        env=env,
        check=True,
        capture_output=True,
    )
    assert list(canaries.iterdir()) == []
    subprocess.run(
        [sys.executable, "-m", "looplet", "blueprint", str(folder), "--trust"],
        env=env,
        check=True,
        capture_output=True,
    )
    assert sorted(p.name for p in canaries.iterdir()) == ["agent.imported", "helpers.imported"]


def test_a_build_that_calls_exit_is_a_cartridge_error_not_the_end_of_the_host(tmp_path: Path) -> None:
    from looplet.cartridges import CartridgeError, make_runtime, open_cartridge
    from looplet.frontmatter import render_front_matter

    folder = tmp_path / "quitter"
    folder.mkdir()
    front = {"name": "quitter", "description": "Exits.", "entrypoint": "agent.py"}
    (folder / "SKILL.md").write_text(render_front_matter(front, "Exit.\n"))
    (folder / "agent.py").write_text(
        "import sys\n\ndef build(runtime):\n    sys.exit(3)\n\n"
        "def scripted_responses():\n    raise SystemExit(4)\n"
    )
    cartridge = open_cartridge(folder, trust=True)
    runtime = make_runtime(cartridge.card, workspace=tmp_path / "ws")
    with pytest.raises(CartridgeError, match="build\\(runtime\\) failed: SystemExit"):
        cartridge.build(runtime)
    with pytest.raises(CartridgeError, match="scripted_responses failed: SystemExit"):
        cartridge.scripted_llm(runtime)
