"""The printed briefing: risks first, then what to block and hunt, the ATT&CK picture, and actions.

Indicators are shown defanged, so the briefing can be pasted into a ticket
or a chat without making live links.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .iocs import defang

if TYPE_CHECKING:
    from .tools import Briefing

__all__ = ["render_briefing"]


def _risks(briefing: Briefing) -> list[str]:
    ratings = sorted(briefing.ratings.values(), key=lambda r: (-r.points, r.cve))
    if not ratings:
        return ["Vulnerabilities: none rated."]
    lines = ["Vulnerabilities, highest risk first:"]
    for r in ratings:
        cve = briefing.feeds.cves[r.cve]
        flags = ["exploited" if cve.known_exploited else "not known exploited"]
        flags.append(f"on {', '.join(r.exposed)}" if r.exposed else "not in our inventory")
        lines.append(f"  {r.priority} {r.rating:<8}  {r.cve:<15} CVSS {cve.cvss:>4.1f}  {'; '.join(flags)}")
        lines.append(f"     {cve.title}")
        lines.append(f"     why: {'; '.join(r.factors)}")
    return lines


def _indicators(briefing: Briefing) -> list[str]:
    found = briefing.indicators
    blockable = [("ip", v) for v in found.ips] + [("domain", v) for v in found.domains]
    blockable += [("url", v) for v in found.urls]
    lines = [f"Indicators to block ({len(blockable)}, defanged):"]
    lines += [f"  {kind:<7}{defang(value)}" for kind, value in blockable] or ["  none"]
    hashes = [(kind, value) for kind, values in found.hashes.items() for value in values]
    if hashes:
        lines.append(f"File hashes to hunt for ({len(hashes)}):")
        lines += [f"  {kind:<7}{value}" for kind, value in hashes]
    if found.internal_ips:
        lines.append(f"Internal hosts named (hunt on them, do not block): {', '.join(found.internal_ips)}")
    return lines


def _techniques(briefing: Briefing) -> list[str]:
    order = {tactic: i for i, tactic in enumerate(briefing.feeds.tactics)}
    techniques = sorted(briefing.techniques.values(), key=lambda t: (order.get(t["tactic"], 99), t["id"]))
    lines = [f"ATT&CK techniques ({len(techniques)}, in kill-chain order):"]
    for t in techniques:
        lines.append(f"  {t['tactic']:<20} {t['id']:<10} {t['name']}  ({'; '.join(t['evidence'])})")
    if not techniques:
        lines.append("  none mapped")
    if briefing.not_in_table:
        lines.append(f"  named but not in the local table: {', '.join(briefing.not_in_table)}")
    return lines


def _actions(briefing: Briefing) -> list[str]:
    ratings = sorted(briefing.ratings.values(), key=lambda r: (-r.points, r.cve))
    actions = [
        f"patch {r.cve} on {', '.join(r.exposed)} ({r.priority})"
        for r in ratings
        if r.exposed and r.points >= 3
    ]
    actions += [
        f"check whether anything unlisted runs {r.cve}'s products ({r.priority})"
        for r in ratings
        if not r.exposed and r.points >= 3
    ]
    found = briefing.indicators
    blockable = len(found.ips) + len(found.domains) + len(found.urls)
    if blockable:
        actions.append(f"block the {blockable} indicators at the proxy and firewall")
    if any(found.hashes.values()):
        actions.append("hunt for the file hashes on endpoints")
    lines = ["Actions:"]
    lines += [f"  {n}. {action}" for n, action in enumerate(actions, 1)] or ["  none"]
    return lines


def render_briefing(briefing: Briefing) -> str:
    sources = ", ".join(briefing.sources) or "no advisory read"
    head = [f"Security briefing from the offline feeds in {briefing.folder.name}/ ({sources})", ""]
    sections = [_risks(briefing), _indicators(briefing), _techniques(briefing), _actions(briefing)]
    body: list[str] = []
    for section in sections:
        body += [*section, ""]
    return "\n".join(head + body + [f"Summary: {briefing.summary()}"])
