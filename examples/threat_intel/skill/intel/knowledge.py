"""The offline feeds (a CVE feed, an ATT&CK technique table, our asset inventory), the risk rule
and the ATT&CK mapping.

The risk rule, as every rating states it:

    points = CVSS band (critical 9.0+ = 3, high 7.0+ = 2, medium 4.0+ = 1, low = 0)
           + 1 when the CVE is known to be exploited in the wild
           + 1 when it affects a product one of our assets runs, - 1 when it affects none
    rating = critical at 4 or more, high at 3, medium at 2, low below
    priority = P1 (critical) ... P4 (low)

So a CVSS 10 flaw in a product we do not run is "high", not "critical",
and a medium flaw that is exploited and on our servers climbs to "high".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Cve", "Technique", "Feeds", "Rating", "rate", "map_techniques", "RULE"]

RULE = (
    "points = CVSS band (critical>=9.0: 3, high>=7.0: 2, medium>=4.0: 1, low: 0) "
    "+1 if known exploited in the wild, +1 if it affects a product our assets run (-1 if none); "
    "rating: >=4 critical (P1), 3 high (P2), 2 medium (P3), else low (P4)"
)
_BANDS = ((9.0, "critical", 3), (7.0, "high", 2), (4.0, "medium", 1), (0.0, "low", 0))
_RATINGS = ((4, "critical", "P1"), (3, "high", "P2"), (2, "medium", "P3"))
_TECHNIQUE_ID = re.compile(r"\bT\d{4}(?:\.\d{3})?\b")


@dataclass(frozen=True)
class Cve:
    id: str
    title: str
    published: str
    cvss: float
    known_exploited: bool
    products: tuple[str, ...]
    techniques: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "published": self.published,
            "cvss": self.cvss,
            "known_exploited": self.known_exploited,
            "products": list(self.products),
            "techniques": list(self.techniques),
        }


@dataclass(frozen=True)
class Technique:
    id: str
    name: str
    tactic: str
    keywords: tuple[str, ...]


@dataclass
class Feeds:
    """The structured feeds of a feed folder (the text advisories are read by the tools)."""

    cves: dict[str, Cve]
    techniques: dict[str, Technique]
    tactics: list[str]
    assets: dict[str, tuple[str, ...]]  # asset name -> products it runs

    @classmethod
    def load(cls, read: Any) -> Feeds:
        """Load through `read(name) -> text`, so the tools' confined reader is the only way in."""
        cves = json.loads(read("cves.json"))["cves"]
        attack = json.loads(read("attack.json"))
        assets = json.loads(read("assets.json"))["assets"]
        return cls(
            cves={
                c["id"].upper(): Cve(
                    c["id"].upper(),
                    c["title"],
                    c["published"],
                    float(c["cvss"]),
                    bool(c["known_exploited"]),
                    tuple(c["products"]),
                    tuple(c.get("techniques", [])),
                )
                for c in cves
            },
            techniques={
                t["id"]: Technique(t["id"], t["name"], t["tactic"], tuple(k.lower() for k in t["keywords"]))
                for t in attack["techniques"]
            },
            tactics=list(attack["tactics"]),
            assets={a["name"]: tuple(a["products"]) for a in assets},
        )

    @staticmethod
    def from_folder(folder: Path) -> Feeds:
        return Feeds.load(lambda name: (folder / name).read_text(encoding="utf-8"))

    def exposed(self, cve: Cve) -> list[str]:
        """Our assets that run a product the CVE affects."""
        return [name for name, products in self.assets.items() if set(products) & set(cve.products)]


@dataclass
class Rating:
    cve: str
    rating: str
    priority: str
    points: int
    factors: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cve": self.cve,
            "rating": self.rating,
            "priority": self.priority,
            "points": self.points,
            "why": self.factors,
            "exposed_assets": self.exposed,
            "rule": RULE,
        }


def rate(cve: Cve, feeds: Feeds) -> Rating:
    """The risk of `cve` to us, by `RULE`, with every factor that counted."""
    band, points = next((name, p) for floor, name, p in _BANDS if cve.cvss >= floor)
    factors = [f"CVSS {cve.cvss:.1f} is {band}: {points:+d}"]
    if cve.known_exploited:
        points += 1
        factors.append("known exploited in the wild: +1")
    exposed = feeds.exposed(cve)
    if exposed:
        points += 1
        factors.append(f"affects products our assets run ({', '.join(exposed)}): +1")
    else:
        points -= 1
        factors.append("affects no product in our inventory: -1")
    rating, priority = next(((r, p) for floor, r, p in _RATINGS if points >= floor), ("low", "P4"))
    factors.append(f"{points} points: {rating}")
    return Rating(cve.id, rating, priority, points, factors, exposed)


def map_techniques(text: str, feeds: Feeds, named: tuple[str, ...] = ()) -> dict[str, Any]:
    """ATT&CK techniques of a text: ids it names (or `named`) and the table's phrases it contains.

    Returns the techniques in kill-chain order (the table's tactic order),
    each with its evidence, and the ids named that the table does not hold.
    """
    evidence: dict[str, list[str]] = {}
    unknown: list[str] = []
    for tid in [*named, *_TECHNIQUE_ID.findall(text)]:
        if tid in feeds.techniques:
            evidence.setdefault(tid, []).append(
                "named in the text" if tid not in named else "listed for the CVE"
            )
        elif tid not in unknown:
            unknown.append(tid)
    lower = text.lower()
    for technique in feeds.techniques.values():
        for keyword in technique.keywords:
            if re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", lower):
                evidence.setdefault(technique.id, []).append(f"mentions '{keyword}'")
    order = {tactic: i for i, tactic in enumerate(feeds.tactics)}
    ids = sorted(evidence, key=lambda t: (order.get(feeds.techniques[t].tactic, len(order)), t))
    return {
        "techniques": [
            {
                "id": t,
                "name": feeds.techniques[t].name,
                "tactic": feeds.techniques[t].tactic,
                "evidence": sorted(set(evidence[t])),
            }
            for t in ids
        ],
        "not_in_table": unknown,
    }
