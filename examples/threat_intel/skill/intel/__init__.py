"""Threat intel: a local-first security briefing from offline feeds (CVE lookup, IOC extraction,
risk rating, ATT&CK mapping).

Shared by the example's command (``examples/threat_intel/agent.py``) and its
cartridge (``examples/threat_intel/skill/``): this package and the shipped
feeds live inside the cartridge folder because a cartridge may only use
files inside its folder.
"""

from __future__ import annotations

from .iocs import Indicators, defang, extract_indicators, refang
from .knowledge import RULE, Feeds, map_techniques, rate
from .scripted import scripted_reply
from .tools import FEEDS, SYSTEM_PROMPT, TASK, Briefing, IntelError, build_preset, build_tools

__all__ = [
    "FEEDS",
    "RULE",
    "SYSTEM_PROMPT",
    "TASK",
    "Briefing",
    "Feeds",
    "Indicators",
    "IntelError",
    "build_preset",
    "build_tools",
    "defang",
    "extract_indicators",
    "map_techniques",
    "rate",
    "refang",
    "scripted_reply",
]
