"""Two-phase loading of skill folders (RELIABILITY J1-J3): inspecting runs nothing, loading needs
trust, imports never shadow or replace host modules, and every path a manifest names stays inside."""

from __future__ import annotations

import json
import os
import shutil
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

import looplet
from looplet.frontmatter import SkillFormatError
from looplet.skills import (
    SkillLoadError,
    SkillStore,
    TrustList,
    UntrustedSkillError,
    folder_digest,
    inspect,
    load_entrypoint,
    module_name,
    validate,
)

SKILLS = Path(__file__).parent / "data" / "skills"
CARTRIDGES = ["canary_cartridge", "twin_cartridge", "failing_cartridge", "nested_entry"]
CANARY_MODULES = [
    "agent.py",
    "helpers.py",
    "late.py",
    "json.py",
    "typing.py",
    "yaml.py",
    "looplet-package",
    "lib",
    "lib-words",
    "tools-tool",
]


@pytest.fixture
def canaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder the fixture cartridges' Python files write a canary into when they are imported."""
    folder = tmp_path / "canaries"
    folder.mkdir()
    monkeypatch.setenv("LOOPLET_CANARY_DIR", str(folder))
    return folder


@pytest.fixture
def skills(tmp_path: Path) -> Path:
    """A private copy of the fixture folders, so tests can add links and edit files."""
    copy = tmp_path / "skills"
    shutil.copytree(SKILLS, copy, symlinks=True)
    return copy


@pytest.fixture
def clean_modules() -> Iterator[None]:
    """Forget the cartridge packages a test imported, so each test loads afresh."""
    yield
    for key in [key for key in sys.modules if key.startswith("looplet_cartridge_")]:
        del sys.modules[key]


def written(canaries: Path) -> list[str]:
    return sorted(path.name for path in canaries.iterdir())


# -- J1: inspecting, listing and validating run nothing ------------------------------------------


@pytest.mark.parametrize("name", [*CARTRIDGES, "hostile/mcp_command", "hostile/escape_extends"])
def test_inspect_list_and_validate_run_no_code(name: str, canaries: Path, skills: Path) -> None:
    before = dict(sys.modules)
    card = inspect(skills / name)
    problems = validate(skills / name)
    store = SkillStore(skills)
    assert card.path == (skills / name).resolve()
    assert isinstance(problems, list)
    assert store.skills or store.invalid
    assert written(canaries) == []
    assert not (skills / name / "__pycache__").exists()
    assert not any(key.startswith("looplet_cartridge_") for key in sys.modules if key not in before)


def test_a_declared_mcp_command_is_kept_as_data_and_never_started(
    canaries: Path, skills: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(canaries)
    card = inspect(skills / "hostile" / "mcp_command")
    assert card.metadata["mcp"] == {"command": "touch", "args": ["mcp-canary"]}
    assert card.warnings == ("unknown key 'mcp' (kept, not used)",)
    assert card.problems == ()
    assert written(canaries) == []


@pytest.mark.parametrize("trust", [False, None, "yes", 1, TrustList()])
def test_loading_untrusted_raises_before_any_code_runs(
    trust: object, canaries: Path, skills: Path, clean_modules: None
) -> None:
    card = inspect(skills / "canary_cartridge")
    before = set(sys.modules)
    with pytest.raises(UntrustedSkillError, match="its code was not run"):
        load_entrypoint(card, trust=trust)  # type: ignore[arg-type]
    assert written(canaries) == []
    assert set(sys.modules) == before


def test_a_trust_list_entry_lets_exactly_that_folder_as_it_is_load(
    canaries: Path, skills: Path, clean_modules: None
) -> None:
    card = inspect(skills / "canary_cartridge")
    trust = TrustList([(skills / "canary_cartridge", card.digest)])
    module = load_entrypoint(card, trust=trust)
    assert module.HELPER_VALUE == "canary helper"
    other = inspect(skills / "twin_cartridge")
    with pytest.raises(UntrustedSkillError):
        load_entrypoint(other, trust=trust)


def test_a_folder_changed_after_it_was_trusted_is_refused(
    canaries: Path, skills: Path, clean_modules: None
) -> None:
    card = inspect(skills / "canary_cartridge")
    trust = TrustList()
    trust.add(card)
    (skills / "canary_cartridge" / "helpers.py").write_text("VALUE = 'tampered'\n")
    with pytest.raises(UntrustedSkillError, match="not in the trust list"):
        load_entrypoint(inspect(skills / "canary_cartridge"), trust=trust)
    with pytest.raises(UntrustedSkillError, match="changed since it was inspected"):
        load_entrypoint(card, trust=True)
    assert written(canaries) == []


def test_the_trust_list_saves_and_loads(tmp_path: Path, skills: Path) -> None:
    card = inspect(skills / "twin_cartridge")
    trust = TrustList()
    trust.add(card)
    trust.save(tmp_path / "trusted.json")
    assert (tmp_path / "trusted.json").stat().st_mode & 0o777 == 0o600
    again = TrustList.load(tmp_path / "trusted.json")
    assert card in again and len(again) == 1
    assert len(TrustList.load(tmp_path / "missing.json")) == 0
    with pytest.raises(SkillFormatError, match="not a trust list"):
        TrustList.from_json('{"trusted": 3}')


# -- J2: module shadowing ------------------------------------------------------------------------


def test_loading_replaces_no_host_module_and_leaves_sys_path_alone(
    canaries: Path, skills: Path, clean_modules: None
) -> None:
    card = inspect(skills / "canary_cartridge")
    modules_before = dict(sys.modules)
    path_before = list(sys.path)
    module = load_entrypoint(card, trust=True)
    assert sys.path == path_before
    replaced = [key for key, value in modules_before.items() if sys.modules.get(key) is not value]
    assert replaced == []
    added = {key for key in sys.modules if key not in modules_before}
    ours = {key for key in added if key.startswith("looplet_cartridge_")}
    assert ours == {module.__name__, *(f"{module.__name__}.{s}" for s in ("helpers", "lib", "lib.words"))}
    # The files beside the entrypoint named like host modules never ran; the host's did.
    assert written(canaries) == ["agent.py", "helpers.py", "lib", "lib-words"]
    assert module.JSON_FILE == json.__file__
    assert module.TYPING_FILE == typing.__file__
    assert module.LOOPLET_FILE == looplet.__file__
    assert sys.modules["json"] is json and json.dumps({}) == "{}"
    assert module.__name__ == module_name(card) == f"looplet_cartridge_canary_cartridge_{card.digest[:8]}"


def test_helpers_beside_the_entrypoint_import_relatively_now_and_later(
    canaries: Path, skills: Path, clean_modules: None
) -> None:
    module = load_entrypoint(inspect(skills / "canary_cartridge"), trust=True)
    assert module.build(None).system_prompt == "You are a canary."
    assert module.late_helper() == "late"  # imported after the load returned
    assert f"{module.__name__}.late" in sys.modules
    nested = load_entrypoint(inspect(skills / "nested_entry"), trust=True)
    assert nested.RESULT == 42


def test_two_cartridges_with_the_same_helper_name_each_get_their_own(
    canaries: Path, skills: Path, clean_modules: None
) -> None:
    first = load_entrypoint(inspect(skills / "canary_cartridge"), trust=True)
    second = load_entrypoint(inspect(skills / "twin_cartridge"), trust=True)
    assert (first.HELPER_VALUE, second.HELPER_VALUE) == ("canary helper", "twin helper")
    assert "helpers" not in sys.modules


def test_loading_the_same_folder_twice_runs_it_once(
    canaries: Path, skills: Path, clean_modules: None
) -> None:
    card = inspect(skills / "canary_cartridge")
    first = load_entrypoint(card, trust=True)
    (canaries / "agent.py").unlink()
    assert load_entrypoint(card, trust=True) is first
    assert "agent.py" not in written(canaries)


def test_no_bytecode_is_written_into_or_read_from_the_folder(
    canaries: Path, skills: Path, clean_modules: None
) -> None:
    folder = skills / "twin_cartridge"
    card = inspect(folder)
    # A planted cache file the normal import would trust (it is not in the digest).
    cache = folder / "__pycache__"
    cache.mkdir()
    planted = cache / f"helpers.cpython-{sys.version_info.major}{sys.version_info.minor}.pyc"
    planted.write_bytes(b"junk")
    assert folder_digest(folder) == card.digest
    module = load_entrypoint(card, trust=True)
    assert module.HELPER_VALUE == "twin helper"
    assert [p.name for p in cache.iterdir()] == [planted.name]


def test_an_entrypoint_that_raises_is_a_load_error_and_leaves_no_module(
    canaries: Path, skills: Path, clean_modules: None
) -> None:
    card = inspect(skills / "failing_cartridge")
    with pytest.raises(SkillLoadError, match="RuntimeError: the entrypoint broke on import") as caught:
        load_entrypoint(card, trust=True)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert not any(key.startswith(module_name(card)) for key in sys.modules)


def test_a_helper_linked_to_outside_the_folder_is_not_imported(
    canaries: Path, skills: Path, tmp_path: Path, clean_modules: None
) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("VALUE = 'outside'\n")
    folder = skills / "twin_cartridge"
    (folder / "helpers.py").unlink()
    (folder / "helpers.py").symlink_to(outside)
    card = inspect(folder)
    assert any("link that resolves outside" in p for p in card.problems)
    with pytest.raises(SkillFormatError, match="resolves outside"):
        load_entrypoint(card, trust=True)


def test_a_plain_skill_or_an_invalid_card_cannot_be_loaded(skills: Path) -> None:
    with pytest.raises(SkillFormatError, match="not a cartridge"):
        load_entrypoint(inspect(skills / "library" / "pdf-forms"), trust=True)
    with pytest.raises(SkillFormatError, match="cannot load"):
        load_entrypoint(inspect(skills / "hostile" / "escape_entrypoint"), trust=True)


# -- J3: every path a manifest names stays inside ------------------------------------------------

PAYLOADS: list[str] = json.loads((Path(__file__).parent / "data" / "path_payloads.json").read_text())[
    "payloads"
]
LINKS = {"link_out", "file_link", "dangling_out", "abs_link", "up_link"}


def _manifest_value(payload: str, canary: Path) -> str:
    return payload.replace("{canary}", str(canary))


@pytest.fixture
def escape_site(tmp_path: Path) -> tuple[Path, Path]:
    """A skill folder with a valid entrypoint and the corpus's links, beside an outside canary tree."""
    canary = tmp_path / "canary"
    (canary / "deep").mkdir(parents=True)
    (canary / "secret.txt").write_text("secret")
    (canary / "deep" / "inner.txt").write_text("inner")
    (canary / "evil.py").write_text("raise SystemExit('outside code ran')\n")
    folder = tmp_path / "skill"
    (folder / "sub").mkdir(parents=True)
    (folder / "agent.py").write_text("def build(runtime): return None\n")
    (folder / "link_out").symlink_to(canary)
    (folder / "file_link").symlink_to(canary / "evil.py")
    (folder / "dangling_out").symlink_to(canary / "missing.py")
    (folder / "abs_link").symlink_to(canary.resolve())
    (folder / "sub" / "up_link").symlink_to("../../canary")
    return folder, canary


def _write_manifest(folder: Path, key: str, value: str) -> None:
    quoted = json.dumps(value)  # a double-quoted scalar with JSON escapes, which the reader accepts
    entry = "" if key == "entrypoint" else "entrypoint: agent.py\n"
    (folder / "SKILL.md").write_text(f"---\nname: escape\ndescription: d\n{entry}{key}: {quoted}\n---\n")


def _escapes(folder: Path, value: str) -> bool:
    """Ground truth: whether `value`, taken as a path under `folder`, ends up outside it."""
    try:
        return not Path(os.path.realpath(folder / value)).is_relative_to(folder.resolve())
    except ValueError:  # a NUL: no file can have that name, so only refusal is right
        return True


def test_the_payload_corpus_is_refused_in_every_path_key(escape_site: tuple[Path, Path]) -> None:
    folder, canary = escape_site
    tried = escaping = 0
    for key in ("entrypoint", "extends", "tools", "resources"):
        for payload in PAYLOADS:
            value = _manifest_value(payload, canary)
            _write_manifest(folder, key, value)
            card = inspect(folder)
            about_key = [p for p in card.problems if p.startswith(f"{key} ")]
            tried += 1
            if _escapes(folder, value) or value.startswith("~") or "\\" in value:
                escaping += 1
                assert about_key, (key, payload)
                assert card.entrypoint is None or card.entrypoint.resolve().is_relative_to(folder.resolve())
            if key == "entrypoint":
                assert about_key, payload  # outside, or not a .py file in the folder
    assert tried == 4 * len(PAYLOADS)
    # The corpus is mostly escapes; a change that made most payloads look harmless would show here.
    assert escaping >= 4 * 40, escaping


LINKED = sorted({p for p in PAYLOADS if LINKS & set(p.split("/"))} | {"sub/up_link/evil.py", "file_link"})


@pytest.mark.parametrize("payload", LINKED)
def test_an_entrypoint_through_a_link_out_is_refused_and_never_runs(
    payload: str, escape_site: tuple[Path, Path]
) -> None:
    folder, _canary = escape_site
    _write_manifest(folder, "entrypoint", payload)
    card = inspect(folder)
    assert card.problems
    with pytest.raises(SkillFormatError):
        load_entrypoint(card, trust=True)


def test_a_linked_tool_directory_pointing_outside_is_a_problem(escape_site: tuple[Path, Path]) -> None:
    folder, _ = escape_site
    _write_manifest(folder, "tools", "link_out")
    problems = inspect(folder).problems
    assert (
        "tools 'link_out' resolves outside the folder: every path must stay inside the skill folder"
        in problems
    )
    assert "'link_out' is a link that resolves outside the folder" in problems


def test_a_skill_md_that_is_a_link_or_a_fifo_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("---\nname: stolen\ndescription: d\n---\n")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "SKILL.md").symlink_to(outside)
    card = inspect(linked)
    assert card.name == "" and any("a link, or unreadable" in p for p in card.problems)
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "SKILL.md")
    card = inspect(fifo)  # would hang if it opened the FIFO for a blocking read
    assert any("not a regular file" in p for p in card.problems)
