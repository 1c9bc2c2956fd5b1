"""examples/threat_intel: the seed README command, the briefing against the feeds, IOC extraction
(tables, and the defang/refang round trip as a property), the risk rule, ATT&CK mapping, the
confinement of the feed tools, and the cartridge."""

from __future__ import annotations

import importlib.util
import json
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
EXAMPLE = ROOT / "examples" / "threat_intel"


def _load(path: Path, name: str) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


agent = _load(EXAMPLE / "agent.py", "_test_threat_intel_agent")
intel: Any = agent.intel
knowledge: Any = sys.modules[intel.__name__ + ".knowledge"]


@pytest.fixture(scope="module")
def briefing_output() -> str:
    """The seed README's command, exactly as written, from the repository root, with no key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    out = subprocess.run(
        [sys.executable, "examples/threat_intel/agent.py", "--scripted"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout


def section(text: str, title: str) -> list[str]:
    lines = text.split("Security briefing from", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return lines[start:end]


def test_the_seed_readme_command_prints_a_briefing_from_the_tools(briefing_output: str) -> None:
    steps = [
        line.split("(")[0].split()[-1] for line in briefing_output.splitlines() if re.match(r"#\d+ ✓", line)
    ]
    assert steps == (
        ["list_feeds", "extract_iocs"]
        + ["lookup_cve"] * 3
        + ["rate_risk"] * 3
        + ["map_attack", "make_briefing", "done"]
    )
    assert "stopped: done" in briefing_output
    (answer,) = [line for line in briefing_output.splitlines() if line.startswith("answer: ")]
    assert briefing_output.rstrip().endswith("Summary: " + answer.removeprefix("answer: "))


def test_risks_follow_the_rule_and_the_inventory(briefing_output: str) -> None:
    risks = section(briefing_output, "Vulnerabilities")
    ranked = [line.split()[:3] for line in risks if re.match(r"\s+P\d", line)]
    assert ranked == [
        ["P1", "critical", "CVE-2021-44228"],  # 10.0, exploited, on billing-api: 3+1+1
        ["P1", "critical", "CVE-2023-23397"],  # 9.8, exploited, on workstations
        ["P2", "high", "CVE-2024-3400"],  # 10.0, exploited, but we run no PAN-OS: 3+1-1
    ]
    assert "affects no product in our inventory: -1; 3 points: high" in "\n".join(risks)


def test_indicators_are_refanged_for_tools_and_shown_defanged(briefing_output: str) -> None:
    block = "\n".join(section(briefing_output, "Indicators to block"))
    for shown in (
        "198[.]51[.]100[.]34",
        "192[.]0[.]2[.]61",
        "203[.]0[.]113[.]77",
        "cdn-invoice-portal[.]example",
        "mail[.]invoice-portal[.]example",
        "hxxps://cdn-invoice-portal[.]example/assets/update.bin",
        "hxxp://203[.]0[.]113[.]77:8080/upload",
    ):
        assert shown in block
    assert "10.20.30" not in block  # an internal host is hunted on, not blocked
    assert "Internal hosts named (hunt on them, do not block): 10.20.30.40" in briefing_output
    assert "svcupdate" not in block and "docm" not in block  # file names are not domains
    assert "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" in briefing_output


def test_attack_mapping_in_kill_chain_order_with_evidence(briefing_output: str) -> None:
    lines = section(briefing_output, "ATT&CK techniques")
    ids = [
        re.split(r"\s{2,}", line.strip())[1].split()[0]
        for line in lines[1:]
        if not line.strip().startswith("named")
    ]
    assert ids[:3] == ["T1190", "T1566", "T1566.001"] and ids[-1] == "T1041"
    assert "T1187" in ids  # from "NTLM hash", not named in the text
    assert "named but not in the local table: T9999" in lines[-1]


def test_in_process_run_matches_the_command(briefing_output: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert agent.main(["--scripted"]) == 0

    def untimed(text: str) -> str:
        return re.sub(r"\[[\d.]+m?s\]", "", text)

    assert untimed(capsys.readouterr().out) == untimed(briefing_output)


def test_the_briefing_follows_the_feeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feeds = tmp_path / "feeds"
    shutil.copytree(intel.FEEDS, feeds)
    assets = json.loads((feeds / "assets.json").read_text())
    assets["assets"].append({"name": "vpn", "products": ["paloaltonetworks:pan-os"]})
    (feeds / "assets.json").write_text(json.dumps(assets))
    assert agent.main(["--scripted", "--feeds", str(feeds)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"P1 critical\s+CVE-2024-3400 .* on vpn", out)
    assert "patch CVE-2024-3400 on vpn (P1)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scripted", "--feeds", "/no/such/feeds"], "'/no/such/feeds' is not a directory"),
        (["--scripted", "--max-steps", "0"], "the step budget must be at least 1"),
    ],
)
def test_a_usage_mistake_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        agent.main(argv)
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("threat_intel: error: ") and message in line


def test_a_feed_folder_without_its_tables_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "advisory.txt").write_text("nothing")
    assert agent.main(["--scripted", "--feeds", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("threat_intel: cannot load the feeds in") and "cves.json" in line


# -- IOC extraction -------------------------------------------------------------------------------

EXTRACTS = [
    # (text, field, expected values)
    ("beacon to 198.51.100[.]34 daily", "ips", ["198.51.100.34"]),
    (
        "seen 203.0.113(.)7, 192.0.2{.}1 and 192[dot]0[dot]2[dot]9.",
        "ips",
        ["203.0.113.7", "192.0.2.1", "192.0.2.9"],
    ),
    ("version 1.2.3.4.5 and 999.1.1.1 are not addresses", "ips", []),
    ("staging on 10.1.2.3 and 192.168.0.5", "internal_ips", ["10.1.2.3", "192.168.0.5"]),
    (
        "C2: evil-cdn[.]example and Update.Checker[.]TEST",
        "domains",
        ["evil-cdn.example", "update.checker.test"],
    ),
    ("drops invoice.docm and svc.exe, from evil[.]zip", "domains", ["evil.zip"]),
    ("see hxxps://a[.]example/x.bin?id=1, then", "urls", ["https://a.example/x.bin?id=1"]),
    ("HXXP[:]//b[.]example/p", "urls", ["http://b.example/p"]),
    ("fxp://files[.]example/drop", "urls", ["ftp://files.example/drop"]),
    ("md5 098f6bcd4621d373cade4e832627b4f6", "md5", ["098f6bcd4621d373cade4e832627b4f6"]),
    ("SHA1 A94A8FE5CCB19BA61C4C0873D391E987982FBBD3", "sha1", ["a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"]),
    ("id 098f6bcd4621d373cade4e832627b4f6aa (34 hex digits) is no hash", "md5", []),
    (
        "patch cve-2021-44228 and CVE-2024-3400; CVE-2024-3400 again",
        "cves",
        ["CVE-2021-44228", "CVE-2024-3400"],
    ),
]


@pytest.mark.parametrize(("text", "kind", "expected"), EXTRACTS)
def test_indicators_are_extracted_from_plain_and_defanged_text(
    text: str, kind: str, expected: list[str]
) -> None:
    found = intel.extract_indicators(text)
    values = found.hashes[kind] if kind in found.hashes else getattr(found, kind)
    assert values == expected


def test_a_url_host_is_also_a_domain_but_its_path_is_not() -> None:
    found = intel.extract_indicators("get hxxps://cdn[.]example/assets/update.bin now")
    assert found.domains == ["cdn.example"]


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
TLD = st.from_regex(r"[a-z]{2,6}", fullmatch=True).filter(lambda t: t not in knowledge_free_extensions())
IP = st.tuples(*[st.integers(0, 255)] * 4).map(lambda o: ".".join(map(str, o)))
DOMAIN = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(LABEL, min_size=1, max_size=3), TLD)
#: Path segments end in a letter or digit: a trailing "." or "," reads as the sentence's, by design.
PATH = st.from_regex(r"(/([A-Za-z0-9_.-]{0,7}[A-Za-z0-9_])?){0,3}", fullmatch=True)
URL = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}{path}",
    st.sampled_from(["http", "https", "ftp"]),
    DOMAIN | IP,
    PATH,
)
_kinds: dict[str, int] = {"ip": 0, "domain": 0, "url": 0}


def knowledge_free_extensions() -> frozenset[str]:
    return frozenset(sys.modules[intel.__name__ + ".iocs"].FILE_EXTENSIONS)


@given(
    st.one_of(IP.map(lambda v: ("ip", v)), DOMAIN.map(lambda v: ("domain", v)), URL.map(lambda v: ("url", v)))
)
def test_refang_undoes_defang_and_extraction_finds_the_defanged_indicator(
    kind_value: tuple[str, str],
) -> None:
    kind, value = kind_value
    shown = intel.defang(value)
    assert "." not in shown.split("://")[-1].split("/")[0].replace("[.]", "")  # the host has no live dot
    assert intel.refang(shown) == value
    found = intel.extract_indicators(f"observed {shown} today")
    if kind == "ip":
        assert value in found.ips + found.internal_ips
    elif kind == "domain":
        assert value in found.domains
    else:
        assert value in found.urls
    _kinds[kind] += 1
    event(kind)


def test_the_round_trip_property_exercised_every_kind() -> None:
    assert min(_kinds.values()) >= 30, _kinds


# -- the risk rule and ATT&CK ---------------------------------------------------------------------


def feeds_with(cvss: float, exploited: bool, product: str) -> Any:
    cve = knowledge.Cve("CVE-2000-0001", "t", "2000-01-01", cvss, exploited, (product,), ())
    return cve, knowledge.Feeds({cve.id: cve}, {}, [], {"server": ("acme:httpd",)})


@pytest.mark.parametrize(
    ("cvss", "exploited", "product", "rating", "priority"),
    [
        (10.0, True, "acme:httpd", "critical", "P1"),  # 3 + 1 + 1
        (9.0, False, "acme:httpd", "critical", "P1"),  # 3 + 0 + 1
        (9.0, False, "other:thing", "medium", "P3"),  # 3 + 0 - 1
        (7.0, True, "other:thing", "medium", "P3"),  # 2 + 1 - 1
        (7.0, True, "acme:httpd", "critical", "P1"),  # 2 + 1 + 1
        (6.9, True, "acme:httpd", "high", "P2"),  # 1 + 1 + 1
        (4.0, False, "acme:httpd", "medium", "P3"),  # 1 + 0 + 1
        (3.9, False, "acme:httpd", "low", "P4"),  # 0 + 0 + 1
        (0.0, False, "other:thing", "low", "P4"),  # 0 + 0 - 1
    ],
)
def test_the_risk_rule(cvss: float, exploited: bool, product: str, rating: str, priority: str) -> None:
    cve, feeds = feeds_with(cvss, exploited, product)
    rated = knowledge.rate(cve, feeds)
    assert (rated.rating, rated.priority) == (rating, priority)
    assert rated.factors[-1] == f"{rated.points} points: {rating}"
    assert rated.to_dict()["rule"] == knowledge.RULE


def test_attack_mapping_uses_ids_and_phrases_on_word_boundaries() -> None:
    feeds = knowledge.Feeds.from_folder(intel.FEEDS)
    mapped = knowledge.map_techniques("They used PowerShell and T1486; also T0000. Not 'rephishing'.", feeds)
    ids = [t["id"] for t in mapped["techniques"]]
    assert ids == ["T1059.001", "T1486"] and mapped["not_in_table"] == ["T0000"]
    assert mapped["techniques"][1]["evidence"] == ["named in the text"]


# -- confinement, the guard, the cartridge --------------------------------------------------------

CANARY = "canary-threat-intel-51c9"


@pytest.fixture
def fenced(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{CANARY} 203.0.113[.]99")
    feeds = tmp_path / "feeds"
    shutil.copytree(intel.FEEDS, feeds)
    (feeds / "linked.txt").symlink_to(outside / "secret.txt")
    (feeds / "linked-dir").symlink_to(outside, target_is_directory=True)
    return feeds


@pytest.mark.parametrize(
    "name",
    [
        "../outside/secret.txt",
        "linked.txt",
        "linked-dir/secret.txt",
        "/etc/hostname",
        "~/secret.txt",
        "cves.json",
    ],
)
def test_no_feed_outside_the_folder_is_read(fenced: Path, name: str) -> None:
    preset, briefing = intel.build_preset(fenced)
    script = [
        ToolCall("read_feed", {"name": name}, call_id="c1"),
        ToolCall("extract_iocs", {"name": name}, call_id="c2"),
        ToolCall("map_attack", {"source": name}, call_id="c3"),
    ]
    result = preset.run(MockLLMBackend(script), "brief", max_steps=3)
    assert [bool(s.tool_result.error) for s in result.steps] == [True, True, True]
    assert CANARY not in repr([s.tool_result.to_dict() for s in result.steps])
    assert briefing.indicators.count() == 0


def test_listing_feeds_does_not_follow_a_directory_link_out(fenced: Path) -> None:
    tools, _ = intel.build_tools(fenced)
    listed = tools.dispatch(ToolCall("list_feeds", {}))
    assert "linked-dir/secret.txt" not in [f["name"] for f in listed.data["feeds"]]


def test_done_before_every_cve_is_rated_is_blocked() -> None:
    preset, briefing = intel.build_preset()
    script = [
        ToolCall("extract_iocs", {"name": "advisory.txt"}, call_id="c1"),
        ToolCall("done", {"answer": "quiet day"}, call_id="c2"),
        ToolCall("done", {"answer": "quiet day"}, call_id="c3"),
        ToolCall("done", {"answer": "quiet day"}, call_id="c4"),
    ]
    llm = MockLLMBackend(script)
    result = preset.run(llm, "brief")
    told = [m.content for m in llm.calls[2].messages if m.role == "tool"][-1]
    assert "rate_risk has not been called for: CVE-2021-44228, CVE-2024-3400, CVE-2023-23397" in told
    assert result.stop_reason == "done" and len(llm.calls) == 4  # the guard gives way after two blocks
    unknown = preset.tools.dispatch(ToolCall("lookup_cve", {"cve_id": "CVE-1999-0001"}))
    assert unknown.error and "not in the local CVE feed" in unknown.error


def runtime(**options: Any) -> SimpleNamespace:
    """A stand-in for looplet.cartridges.CartridgeRuntime with the fields of the cartridge note."""
    return SimpleNamespace(
        card=None,
        folder=EXAMPLE / "skill",
        workspace=EXAMPLE,
        scripted=True,
        max_steps=None,
        model=None,
        trace_dir=None,
        options=options,
    )


def test_the_cartridge_builds_the_analyst_over_the_shipped_or_given_feeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = agent.cartridge
    preset = entry.build(runtime())
    assert preset.name == "threat-intel" and preset.config.max_steps == entry.MAX_STEPS
    result = preset.run(FunctionBackend(entry.scripted_responses(runtime())), intel.TASK)
    assert result.stop_reason == "done"
    assert "P1 critical  CVE-2021-44228" in capsys.readouterr().out
    feeds = tmp_path / "feeds"
    shutil.copytree(intel.FEEDS, feeds)
    (feeds / "advisory.txt").write_text("Nothing to report but CVE-2023-48795.")
    entry.build(runtime(feeds=str(feeds))).run(FunctionBackend(entry.scripted_responses(runtime())), "brief")
    out = capsys.readouterr().out
    assert "P3 medium    CVE-2023-48795" in out and "Indicators to block (0" in out


def test_the_cartridge_keeps_its_code_and_feeds_inside_its_folder() -> None:
    skill = (EXAMPLE / "skill").resolve()
    assert Path(intel.__file__).resolve().is_relative_to(skill) and intel.FEEDS.resolve().is_relative_to(
        skill
    )
    assert "intel" not in sys.modules
    skills = pytest.importorskip("looplet.skills")
    card = skills.inspect(EXAMPLE / "skill")
    assert not card.problems and card.is_cartridge and card.name == "threat-intel"


def test_looplet_run_runs_the_cartridge(capsys: pytest.CaptureFixture[str]) -> None:
    from looplet.cli import main as looplet

    code = looplet(["run", str(EXAMPLE / "skill"), "Brief me", "--scripted", "--no-trace"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Summary: 3 CVEs rated (2 critical, 1 high)" in out


def test_the_cartridges_helper_code_runs_from_source_never_from_planted_bytecode(tmp_path: Path) -> None:
    """The digest leaves ``__pycache__`` out because looplet never runs bytecode from a cartridge: a
    trusted copy with a ``.pyc`` planted later still runs its ``intel`` package from source."""
    from looplet.cartridges import open_cartridge
    from looplet.skills import TrustList, inspect

    folder = tmp_path / "skill"
    shutil.copytree(EXAMPLE / "skill", folder, ignore=shutil.ignore_patterns("__pycache__"))
    card = inspect(folder)
    canary = tmp_path / "canary"
    source = folder / "intel" / "__init__.py"
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
    assert opened.module.intel.__name__ == opened.module.__name__ + ".intel"
