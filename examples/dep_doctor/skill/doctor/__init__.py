"""Dependency Doctor: audit a project's dependency files against offline advisory, license and
maintenance tables, and grade every package on a report card.

Shared by the example's command (``examples/dep_doctor/agent.py``) and its
cartridge (``examples/dep_doctor/skill/``): this package lives inside the
cartridge folder because a cartridge may only use files inside its folder.
"""

from __future__ import annotations

from .audit import Table, Verdict, check
from .manifests import Dependency, Manifest, parse_manifest
from .scripted import scripted_reply
from .tools import DATA, SYSTEM_PROMPT, TASK, Audit, DoctorError, build_preset, build_tools, find_manifests

__all__ = [
    "DATA",
    "SYSTEM_PROMPT",
    "TASK",
    "Audit",
    "Dependency",
    "DoctorError",
    "Manifest",
    "Table",
    "Verdict",
    "build_preset",
    "build_tools",
    "check",
    "find_manifests",
    "parse_manifest",
    "scripted_reply",
]
