"""The docs site builds with ``mkdocs build --strict``, and every page it promises is in it.

Strict mode turns every warning into a failure: a broken relative link or
anchor, a page left out of the nav, a docstring mkdocstrings cannot parse.
The site is built once per test session, into a temporary directory, by the
same command a contributor runs (``python3 -m mkdocs build --strict``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "mkdocs.yml"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason='mkdocs is not installed: pip install -e ".[dev]" brings mkdocs-material and mkdocstrings',
)

#: The pages the docs promise (issue 13's list, and the seed README's table of docs).
PROMISED_PAGES = (
    "index.md",
    "tutorial.md",
    "hooks.md",
    "tools.md",
    "backends.md",
    "context.md",
    "approval-and-permissions.md",
    "checkpoints.md",
    "provenance.md",
    "evals.md",
    "skills.md",
    "durability.md",
    "scale.md",
    "reliability.md",
    "recipes.md",
    "benchmarks.md",
    "faq.md",
    "good-first-issues.md",
    "api.md",
)


@dataclass(frozen=True)
class Build:
    """What one strict build did: its exit code, its output, and where the site went."""

    returncode: int
    output: str
    site: Path


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Build(done.returncode, done.stdout + done.stderr, site)


def nav_pages(entries: Any) -> list[str]:
    """Every Markdown file the nav names, in order, however deeply its sections nest."""
    if isinstance(entries, str):
        return [entries]
    if isinstance(entries, list):
        return [page for entry in entries for page in nav_pages(entry)]
    if isinstance(entries, dict):
        return [page for value in entries.values() for page in nav_pages(value)]
    return []


def configured_nav() -> list[str]:
    yaml = importlib.import_module("yaml")  # a dependency of mkdocs itself (untyped)
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return nav_pages(config["nav"])


def built_page(site: Path, page: str) -> Path:
    """Where mkdocs writes `page` (directory URLs: ``tools.md`` becomes ``tools/index.html``)."""
    stem = page.removesuffix(".md")
    return site / "index.html" if stem == "index" else site / stem / "index.html"


def test_the_site_builds_in_strict_mode(build: Build) -> None:
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.output[-4000:]}"


def test_every_nav_entry_has_a_built_page(build: Build) -> None:
    pages = configured_nav()
    assert pages, "mkdocs.yml has no nav"
    missing = [page for page in pages if not built_page(build.site, page).is_file()]
    assert not missing, f"nav entries with no built page: {missing}\n{build.output[-2000:]}"


def test_the_nav_holds_every_promised_page_and_every_doc_once() -> None:
    pages = configured_nav()
    assert sorted(set(pages)) == sorted(pages), "a page appears twice in the nav"
    promised_missing = [page for page in PROMISED_PAGES if page not in pages]
    assert not promised_missing, f"pages the docs promise but the nav lacks: {promised_missing}"
    on_disk = sorted(path.name for path in (ROOT / "docs").glob("*.md"))
    assert sorted(pages) == on_disk, "every docs/*.md must be in the nav, and the nav only name real files"


def test_the_api_reference_documents_the_loop(build: Build) -> None:
    api = built_page(build.site, "api.md").read_text(encoding="utf-8")
    assert 'id="looplet.composable_loop"' in api, "the API page has no entry for composable_loop"
    assert "Run an agent as an iterator of" in api, "composable_loop's docstring was not rendered"


def test_the_site_loads_no_web_fonts(build: Build) -> None:
    home = built_page(build.site, "index.md").read_text(encoding="utf-8")
    assert "fonts.googleapis.com" not in home and "fonts.gstatic.com" not in home
