"""The dep_doctor and threat_intel example commands against llmock on loopback, through the real
``openai`` SDK: a scripted exchange of tool calls, the tools' results sent back, the report printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from backend_kit import reply

ROOT = Path(__file__).resolve().parents[2]


def _run(llm_server: Any, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env.update(OPENAI_BASE_URL=llm_server.openai_url, OPENAI_API_KEY="local", OPENAI_MODEL="llama3.1")
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _tool_messages(body: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in body["messages"] if m.get("role") == "tool"]


def test_dep_doctor_runs_against_an_openai_compatible_server(llm_server: Any) -> None:
    files = ["package.json", "pyproject.toml", "requirements-dev.txt", "requirements.txt"]
    llm_server.script(
        reply(("find_dependency_files", {"path": "."})),
        reply(*[("check_dependencies", {"path": f}) for f in files]),  # four calls in one turn
        reply(("report_card", {})),
        reply(("done", {"answer": "Overall D: fix PyYAML and lodash first."})),
    )
    out = _run(llm_server, "examples/dep_doctor/agent.py", "examples/dep_doctor/demo_project")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "answer: Overall D: fix PyYAML and lodash first." in out.stdout
    assert "Overall grade: D (" in out.stdout and "CVE-2021-23337" in out.stdout
    bodies = llm_server.bodies()
    assert len(bodies) == 4 and {b["model"] for b in bodies} == {"llama3.1"}
    offered = {t["function"]["name"] for t in bodies[0]["tools"]}
    assert {
        "find_dependency_files",
        "parse_dependency_file",
        "check_dependencies",
        "report_card",
        "done",
    } <= offered
    checked = _tool_messages(bodies[2])[-4:]  # the model saw the four results of its batch, in call order
    assert [json.loads(c)["path"] for c in checked] == files
    assert "CVE-2020-14343" in checked[-1]


def test_threat_intel_runs_against_an_openai_compatible_server(llm_server: Any) -> None:
    cves = ["CVE-2021-44228", "CVE-2024-3400", "CVE-2023-23397"]
    llm_server.script(
        reply(("list_feeds", {})),
        reply(("extract_iocs", {"name": "advisory.txt"})),
        reply(*[("rate_risk", {"cve_id": c}) for c in cves]),
        reply(("map_attack", {"source": "advisory.txt"})),
        reply(("make_briefing", {})),
        reply(("done", {"answer": "Patch Log4j on billing-api today."})),
    )
    out = _run(llm_server, "examples/threat_intel/agent.py")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "answer: Patch Log4j on billing-api today." in out.stdout
    assert "P1 critical  CVE-2021-44228" in out.stdout and "198[.]51[.]100[.]34" in out.stdout
    bodies = llm_server.bodies()
    assert len(bodies) == 6 and {b["model"] for b in bodies} == {"llama3.1"}
    assert "The risk rule" in json.dumps(bodies[0]["messages"])  # the system prompt states it
    extracted = json.loads(_tool_messages(bodies[2])[-1])
    assert extracted["cves"] == cves and "198.51.100.34" in extracted["ips"]
