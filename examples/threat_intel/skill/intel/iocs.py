"""Indicators of compromise in text: IPv4 addresses, domains, URLs, file hashes and CVE ids.

Reports write indicators *defanged* (``198.51.100[.]34``, ``hxxps://evil[.]example``)
so nobody clicks them by accident. Extraction refangs the text first, then
reads the indicators from it; the briefing shows them defanged again.
`refang` undoes exactly what `defang` does, so the two round-trip.

Domains are found by shape (labels, dots, an alphabetic TLD), which also
matches file names such as ``update.bin``; a name whose last part is a
common file extension is taken as a file, unless the report defanged it
(nobody defangs a file name). IPv6 is not extracted.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Indicators", "defang", "refang", "extract_indicators", "is_internal"]

#: Defanging marks and what they stand for, in the order they are undone.
_REFANG_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\[://\]"), "://"),
    (re.compile(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}", re.IGNORECASE), "."),
    (re.compile(r"\[:\]"), ":"),
    (re.compile(r"\[@\]|\[at\]|\(at\)", re.IGNORECASE), "@"),
    (re.compile(r"\bhxxp(s?)(?=\[?:)", re.IGNORECASE), r"http\1"),
    (re.compile(r"\bfxp(?=\[?:)", re.IGNORECASE), "ftp"),
)
_DEFANGED_NAME = re.compile(
    r"[A-Za-z0-9-]+(?:(?:\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}|\.)[A-Za-z0-9-]+)+", re.IGNORECASE
)
_MARK = re.compile(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}", re.IGNORECASE)

_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"'`)\]}]+", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
_DOMAIN = re.compile(
    r"(?<![\w.@-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})(?![\w-]|\.[a-z0-9])",
    re.IGNORECASE,
)
_HASH = re.compile(r"(?<![0-9a-f])(?:[0-9a-f]{64}|[0-9a-f]{40}|[0-9a-f]{32})(?![0-9a-f])", re.IGNORECASE)
_CVE = re.compile(r"\bCVE-\d{4}-\d{4,7}\b", re.IGNORECASE)
_HASH_KINDS = {32: "md5", 40: "sha1", 64: "sha256"}

#: Last parts that make a dotted name a file rather than a domain.
FILE_EXTENSIONS = frozenset(
    "exe dll bin dat pdf doc docx docm xls xlsx xlsm ppt pptx zip rar 7z gz tar tgz js vbs ps1 bat cmd sh "
    "py txt log json xml html htm php jsp asp aspx lnk iso img msi hta jar png jpg jpeg gif svg csv tmp "
    "cfg ini yaml yml md".split()
)
_INTERNAL = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "0.0.0.0/8")
)


def refang(text: str) -> str:
    """Undo defanging: ``[.]`` and friends become ``.``, ``hxxp`` becomes ``http``."""
    for pattern, plain in _REFANG_RULES:
        text = pattern.sub(plain, text)
    return text


def _defang_host(host: str) -> str:
    return host.replace(".", "[.]")


def defang(indicator: str) -> str:
    """Make an IP, domain or URL safe to show: dots of the host as ``[.]``, ``http`` as ``hxxp``."""
    if "://" not in indicator:
        return _defang_host(indicator)
    scheme, rest = indicator.split("://", 1)
    host_end = len(rest)
    for stop in "/?#":
        index = rest.find(stop)
        if index != -1:
            host_end = min(host_end, index)
    scheme = {"http": "hxxp", "https": "hxxps", "ftp": "fxp"}.get(scheme, scheme)
    return f"{scheme}://{_defang_host(rest[:host_end])}{rest[host_end:]}"


def is_internal(ip: str) -> bool:
    """A private, loopback or link-local address: an internal host to hunt on, not one to block."""
    address = ipaddress.ip_address(ip)
    return any(address in network for network in _INTERNAL)


@dataclass
class Indicators:
    """Indicators of one text, refanged, de-duplicated, in order of first appearance."""

    ips: list[str] = field(default_factory=list)
    internal_ips: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    hashes: dict[str, list[str]] = field(default_factory=lambda: {"md5": [], "sha1": [], "sha256": []})
    cves: list[str] = field(default_factory=list)

    def count(self) -> int:
        return (
            len(self.ips)
            + len(self.internal_ips)
            + len(self.domains)
            + len(self.urls)
            + sum(map(len, self.hashes.values()))
        )

    def merge(self, other: Indicators) -> None:
        for name in ("ips", "internal_ips", "domains", "urls", "cves"):
            _extend(getattr(self, name), getattr(other, name))
        for kind, values in other.hashes.items():
            _extend(self.hashes.setdefault(kind, []), values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count(),
            "ips": self.ips,
            "internal_ips": self.internal_ips,
            "domains": self.domains,
            "urls": self.urls,
            "hashes": self.hashes,
            "cves": self.cves,
        }


def _extend(into: list[str], values: list[str]) -> None:
    for value in values:
        if value not in into:
            into.append(value)


def _defanged_names(text: str) -> set[str]:
    """Names the text wrote with a defang mark: they are indicators whatever their last part."""
    return {refang(m.group(0)).lower() for m in _DEFANGED_NAME.finditer(text) if _MARK.search(m.group(0))}


def _urls(plain: str) -> list[str]:
    found: list[str] = []
    for match in _URL.finditer(plain):
        url = match.group(0).rstrip(".,;:!?")
        scheme, rest = url.split("://", 1)
        _extend(found, [f"{scheme.lower()}://{rest}"])
    return found


def _ips(plain: str) -> list[str]:
    found: list[str] = []
    for match in _IPV4.finditer(plain):
        try:
            _extend(found, [str(ipaddress.IPv4Address(match.group(0)))])
        except ValueError:
            continue  # 999.1.1.1, or a version number that looks like an address
    return found


def _domains(plain: str, defanged: set[str], urls: list[str]) -> list[str]:
    found: list[str] = []
    hosts = [urlsplit(u).hostname or "" for u in urls]
    candidates = [*hosts, *(m.group(1).lower() for m in _DOMAIN.finditer(plain))]
    for name in candidates:
        if not name or _IPV4.fullmatch(name) or not re.search(r"\.[a-z]{2,24}$", name):
            continue
        if name.rsplit(".", 1)[-1] in FILE_EXTENSIONS and name not in defanged:
            continue
        _extend(found, [name])
    return found


def extract_indicators(text: str) -> Indicators:
    """Every indicator in `text`, defanged or not."""
    plain = refang(text)
    found = Indicators()
    found.urls = _urls(plain)
    without_urls = _URL.sub(" ", plain)  # a URL's path is not read for domains ("update.bin")
    for ip in _ips(plain):
        (found.internal_ips if is_internal(ip) else found.ips).append(ip)
    found.domains = _domains(without_urls, _defanged_names(text), found.urls)
    for match in _HASH.finditer(plain):
        value = match.group(0).lower()
        _extend(found.hashes[_HASH_KINDS[len(value)]], [value])
    _extend(found.cves, [m.group(0).upper() for m in _CVE.finditer(plain)])
    return found
