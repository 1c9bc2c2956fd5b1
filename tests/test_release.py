"""Release checks: what a user gets from `pip install looplet` or a fresh clone, on the real artefacts.

The sdist and the wheel are built with `python3 -m build` in an isolated environment, as a release
would build them (not `--no-isolation`: hatchling is not in the dev extras, and isolation is what
pip does for users). The build backend (hatchling) therefore comes from the package index pip is
configured with, as it does for the README's `pip install -e .`; CI has PyPI. Nothing else is fetched:
the wheel is installed into a fresh venv with pip's configuration switched off and `--no-index`, so a
runtime dependency, were one ever added, would make the install fail. Each test builds or clones under
`tmp_path`, so the file runs under `pytest -n 2`; it takes 15-30 s there (each worker builds once).
"""

from __future__ import annotations

import email.message
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

import looplet

ROOT = Path(__file__).resolve().parent.parent
#: Packages a fresh venv may hold besides looplet (what `python -m venv` seeds, by Python version).
VENV_SEED = {"pip", "setuptools", "wheel"}
HELLO_LINES = [
    "#1 ✓ greet(name='Alice') → greeting: 'Hello, Alice!'",
    "#2 ✓ greet(name='Bob') → greeting: 'Hello, Bob!'",
    "#3 ✓ done(answer='Greeted Alice and Bob.') → answer: 'Greeted Alice and Bob.'",
    "stopped: done",
    "answer: Greeted Alice and Bob.",
]
#: Building, installing and cloning take seconds, not the suite's usual milliseconds.
RELEASE_TIMEOUT = pytest.mark.timeout(240)


# -- helpers -----------------------------------------------------------------------------------


def quiet_env(*, offline: bool) -> dict[str, str]:
    """The caller's environment without what would make a subprocess see this checkout or this venv.

    `offline` also switches off pip's configuration (index, find-links, constraints), so an install
    can only use what is on its command line.
    """
    leaking = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    env = {k: v for k, v in os.environ.items() if k not in leaking and not k.startswith("COV_CORE_")}
    if offline:
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        env["PIP_NO_INDEX"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(args: Sequence[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command, failing the test with its output when it exits non-zero."""
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env or quiet_env(offline=False), capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@dataclass(frozen=True)
class Venv:
    """A fresh virtual environment, driven through its own interpreter."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def with_path(self, env: dict[str, str]) -> dict[str, str]:
        """`env` with this venv activated, so `python3` and `looplet` on PATH are the venv's."""
        return {**env, "VIRTUAL_ENV": str(self.path), "PATH": f"{self.path / 'bin'}{os.pathsep}{env['PATH']}"}

    def installed(self) -> set[str]:
        listing = run([self.python, "-m", "pip", "list", "--format=json"], cwd=self.path)
        return {package["name"].lower() for package in json.loads(listing)}


def make_venv(where: Path) -> Venv:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, env=quiet_env(offline=True))
    return Venv(where)


def bash_blocks(markdown: str) -> list[str]:
    """The bodies of the ```bash fences, in order."""
    return [m.group(1).strip() for m in re.finditer(r"^```bash\n(.*?)^```", markdown, re.M | re.S)]


def ci_command_lines(script: str) -> list[str]:
    """The lines of .ci/run that do something, leaving out the shebang, comments, `set` and `cd`."""
    lines = [line.strip() for line in script.splitlines()]
    return [
        line for line in lines if line and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]


def assert_hello_world(stdout: str) -> None:
    """The scripted hello world's steps (timings aside) and how it ended."""
    lines = [re.sub(r" \[[\d.]+ms\]$", "", line) for line in stdout.splitlines()]
    assert lines == HELLO_LINES


# -- the built artefacts -----------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path
    rebuilt_wheel: Path  # built from the unpacked sdist, as pip does for a from-source install


def build_into(source: Path, outdir: Path, *kinds: str) -> None:
    run([sys.executable, "-m", "build", *kinds, "--outdir", outdir, source], cwd=source)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The repo's sdist and wheel, and a second wheel built from that sdist alone."""
    out = tmp_path_factory.mktemp("dist")
    build_into(ROOT, out, "--sdist", "--wheel")
    (wheel,) = out.glob("looplet-*.whl")
    (sdist,) = out.glob("looplet-*.tar.gz")
    unpacked = tmp_path_factory.mktemp("sdist")
    with tarfile.open(sdist) as archive:
        archive.extractall(unpacked, filter="data")
    (source,) = unpacked.iterdir()
    rebuilt = tmp_path_factory.mktemp("rebuilt")
    build_into(source, rebuilt, "--wheel")
    (rebuilt_wheel,) = rebuilt.glob("looplet-*.whl")
    return Dist(wheel=wheel, sdist=sdist, rebuilt_wheel=rebuilt_wheel)


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def tracked_package_files() -> set[str]:
    """The package's files as git tracks them, named as they sit in a wheel (`looplet/...`)."""
    listing = run(["git", "ls-files", "src/looplet"], cwd=ROOT)
    return {line.removeprefix("src/") for line in listing.splitlines()}


@RELEASE_TIMEOUT
def test_wheel_holds_the_typed_package_and_nothing_else(dist: Dist) -> None:
    names = wheel_names(dist.wheel)
    top_levels = {name.split("/", 1)[0] for name in names}
    assert top_levels == {"looplet", f"looplet-{looplet.__version__}.dist-info"}
    assert "looplet/py.typed" in names, "the package is typed (mypy --strict) and must say so"
    assert {"looplet/__init__.py", "looplet/examples/hello_world.py"} <= names
    missing = tracked_package_files() - names
    assert not missing, f"tracked package files left out of the wheel: {sorted(missing)}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "examples", "docs")]


@RELEASE_TIMEOUT
def test_wheel_has_no_unconditional_dependency(dist: Dist) -> None:
    meta = wheel_metadata(dist.wheel)
    assert meta["Name"] == "looplet" and meta["Version"] == looplet.__version__
    requires = meta.get_all("Requires-Dist") or []
    assert requires, "the extras (openai, anthropic, ...) are declared"
    unconditional = [req for req in requires if "extra ==" not in req]
    assert unconditional == [], "the core promises zero runtime dependencies"
    assert meta["Requires-Python"] == ">=3.11"


@RELEASE_TIMEOUT
def test_sdist_holds_what_a_from_source_install_needs(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {"pyproject.toml", "README.md", "LICENSE", "src/looplet/__init__.py", "src/looplet/py.typed"}
    assert needed <= names, f"missing from the sdist: {sorted(needed - names)}"
    local_only = (".git/", ".venv/", "__pycache__/", ".coverage", ".hypothesis/", ".mypy_cache/")
    assert not [n for n in names if any(part in n for part in local_only)]


@RELEASE_TIMEOUT
def test_a_wheel_built_from_the_sdist_is_the_wheel_built_from_the_repo(dist: Dist) -> None:
    assert wheel_names(dist.rebuilt_wheel) == wheel_names(dist.wheel)
    assert wheel_metadata(dist.rebuilt_wheel).get_all("Requires-Dist") == wheel_metadata(dist.wheel).get_all(
        "Requires-Dist"
    )


@RELEASE_TIMEOUT
def test_wheel_installs_alone_into_a_fresh_venv_and_runs_the_scripted_hello_world(
    dist: Dist, tmp_path: Path
) -> None:
    venv = make_venv(tmp_path / "venv")
    offline = quiet_env(offline=True)
    run([venv.python, "-m", "pip", "install", "--no-index", dist.wheel], cwd=tmp_path, env=offline)
    assert venv.installed() - VENV_SEED == {"looplet"}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([venv.python, "-c", "import looplet; print(looplet.__file__)"], cwd=elsewhere, env=offline)
    assert Path(where.strip()).is_relative_to(venv.path), "looplet must come from the installed wheel"
    hello: list[str | Path] = [venv.python, "-m", "looplet.examples.hello_world", "--scripted"]
    assert_hello_world(run(hello, cwd=elsewhere, env=offline))
    assert "usage" in run([venv.path / "bin" / "looplet", "--help"], cwd=elsewhere, env=offline).lower()


# -- the README's two commands, from a fresh clone ----------------------------------------------


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh clone of HEAD: what CI checks out (uncommitted changes in this tree are not in it)."""
    where = tmp_path_factory.mktemp("clone") / "looplet"
    run(["git", "clone", "--quiet", ROOT, where], cwd=where.parent)
    yield where
    shutil.rmtree(where, ignore_errors=True)


def readme_commands(checkout: Path) -> list[str]:
    return bash_blocks((checkout / "README.md").read_text(encoding="utf-8"))[:2]


@RELEASE_TIMEOUT
def test_ci_runs_exactly_the_readmes_second_command(clone: Path) -> None:
    _, check = readme_commands(clone)
    assert ci_command_lines((clone / ".ci" / "run").read_text()) == [check]
    workflow = (clone / ".github" / "workflows" / "ci.yml").read_text()
    assert "run: bash .ci/run" in workflow, "the CI job must go through .ci/run"


@RELEASE_TIMEOUT
def test_the_readmes_first_command_runs_the_hello_world_in_a_fresh_clone(clone: Path) -> None:
    first, _ = readme_commands(clone)
    assert first.endswith("python3 -m looplet.examples.hello_world --scripted")
    venv = make_venv(clone / ".venv")
    shell = subprocess.run(
        ["sh", "-c", first],
        cwd=clone,
        env=venv.with_path(quiet_env(offline=False)),
        capture_output=True,
        text=True,
    )
    assert shell.returncode == 0, f"{first!r} failed:\n{shell.stdout}\n{shell.stderr}"
    hello_output = shell.stdout[shell.stdout.index("#1 ") :]
    assert_hello_world(hello_output)
    assert venv.installed() - VENV_SEED == {"looplet"}, "an editable install pulls in no runtime dependency"
    where = run([venv.python, "-c", "import looplet; print(looplet.__file__)"], cwd=clone.parent)
    assert Path(where.strip()).is_relative_to(clone / "src"), "the editable install points at the clone"


# -- the public surface ------------------------------------------------------------------------


def documentation_text() -> str:
    return "\n".join(
        p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))]
    )


def names_missing_from(text: str, names: list[str]) -> set[str]:
    """The names that `text` never mentions as a whole word (`looplet.X` and `::: looplet.X` count)."""
    return {name for name in names if not re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text)}


def test_every_exported_name_is_named_in_the_docs() -> None:
    """`tests/test_exported_members.py` pins `__all__` to a set; this ties that set to what users can read."""
    undocumented = names_missing_from(documentation_text(), looplet.__all__)
    assert not undocumented, (
        f"exported from looplet but named in no doc (README.md, docs/*.md): {sorted(undocumented)}"
    )


def test_a_name_counts_as_documented_only_as_a_whole_word() -> None:
    text = "Use `looplet.ToolSpec` here.\n::: looplet.AsyncLoop\nA Loopy thing; LoopConfigs."
    names = ["ToolSpec", "AsyncLoop", "Loop", "LoopConfig", "LoopHook"]
    assert names_missing_from(text, names) == {"Loop", "LoopConfig", "LoopHook"}


def imported_from_looplet(text: str) -> set[str]:
    """The names `from looplet import ...` lines bring in (one line or a parenthesised list)."""
    names: set[str] = set()
    for match in re.finditer(r"^\s*from looplet import (\([^)]*\)|[^\n]*)", text, re.M):
        listed = re.sub(r"#[^\n]*", "", match.group(1)).strip("()")
        names |= {part.split(" as ")[0].strip() for part in listed.split(",") if part.strip()}
    return names


def test_every_name_the_docs_import_from_looplet_is_exported() -> None:
    imported = imported_from_looplet(documentation_text())
    assert len(imported) >= 20, "the docs' imports were found"
    assert imported <= set(looplet.__all__), (
        f"imported by the docs, not exported: {imported - set(looplet.__all__)}"
    )


def test_imports_are_read_from_single_lines_and_parenthesised_lists() -> None:
    text = (
        "from looplet import A, B as b  # two\n"
        "  from looplet import (\n    C,\n    D,\n)\n"
        "from looplet.x import E\n"
    )
    assert imported_from_looplet(text) == {"A", "B", "C", "D"}


@pytest.mark.parametrize("guide", ["CONTRIBUTING.md", ".github/PULL_REQUEST_TEMPLATE.md"])
def test_contributor_guides_quote_the_readmes_check_command(guide: str) -> None:
    _, check = readme_commands(ROOT)
    assert check in (ROOT / guide).read_text(encoding="utf-8")
