"""Masking secrets wherever text leaves looplet: prompts, records' renderings, errors and logs.

One mechanism, three entry points:

- `redact_value(value)` walks dicts, lists, tuples and sets (keys and values)
  and returns a masked copy. Use it on structured values *before* encoding them,
  so a secret is gone before JSON or ``repr`` could escape it out of sight.
- `redact_text(text)` masks a finished string.
- `redact_env_values(text)` masks only literal secrets (environment values and
  registered ones). It is the provider boundary: the model never sees a secret
  env value, but user data that merely looks like a key is sent unchanged.

What is masked (each replaced by ``[REDACTED]``):

- **literal secrets**: the values of environment variables whose names contain
  KEY, TOKEN, SECRET, PASSWORD, PASSWD or CREDENTIAL (8 characters or more), and
  anything passed to `register_secret`. Each is also found in its encoded forms:
  JSON-escaped (once or twice, ASCII or not), ``repr``-escaped, URL-encoded, and
  base64 at any byte alignment (so ``Basic base64("user:" + secret)`` is caught).
- **known shapes** (`redact_text` and `redact_value` only): OpenAI, Anthropic,
  AWS, GitHub, GitLab, Slack, Stripe, Google and Hugging Face keys; JWTs; PEM
  private keys (also when cut off before their END line); passwords in URLs
  (``redis://:pw@host``, ``postgresql://u:pw@h``); ``password=`` / ``pwd=`` /
  ``token=`` / ``api_key=`` pairs in DSNs and query strings; ``Authorization:``
  headers; ``Bearer`` tokens and ``Basic`` credentials.
- **values under secret-named keys** (`redact_value` only): ``{"password": "x"}``,
  ``{"db_password": "x"}``, ``{"api_key": "x"}``, ``{"access_token": "x"}``.

E-mail addresses are not masked by default (they are often the data a tool
works on); register them with `register_secret` when they are secret.

The environment is read through a cached scan, rebuilt only when ``os.environ``
or the registered secrets change, so masking a short line costs microseconds.
Regular expressions are compiled on first use, so importing this module is cheap.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "REDACTED",
    "redact_text",
    "redact_value",
    "redact_env_values",
    "redaction_version",
    "register_secret",
    "unregister_secret",
]

REDACTED = "[REDACTED]"

_SECRET_ENV_NAME = r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL"
_MIN_ENV_SECRET = 8
_MIN_REGISTERED_SECRET = 4
_ONE_SEARCH = 512  # below this length, one search for every clue beats a search per clue
_MAX_DEPTH = 100  # as `looplet.tools.to_jsonable`: deeper nesting becomes "$too_deep"

# Names whose *value* is a secret in ``name=value`` text (DSNs, query strings);
# ``db_password=`` is found from ``password``, whatever precedes it.
_PAIR_NAMES = (
    r"(?i:password|passwd|passphrase|pwd|secret|token|api[_\-]?key|apikey"
    r"|access[_\-]?key|private[_\-]?key|credentials?|auth)"
)
# Dict keys (and quoted JSON keys) whose value is a secret. Narrower than the
# pairs above: ``{"token": "hello"}`` from a tokenizer and ``{"pwd": "/home"}``
# from a shell are ordinary data.
_KEY_NAMES = (
    r"[A-Za-z0-9_.\-]*?(?:password|passwd|passphrase|secret|api[_\-]?key|apikey"
    r"|access[_\-]?key|private[_\-]?key|secret[_\-]?key|credentials?|authorization"
    r"|(?:access|refresh|auth|bearer|session|api|id)[_\-]?token)"
)
_QUOTED_DOUBLE = r'"(?:[^"\\]|\\.)*"'
_QUOTED_SINGLE = r"'(?:[^'\\]|\\.)*'"

# Each shape is (clues, folded, pattern): the pattern runs only when one of its
# clues is in the text (in the lowercased text when `folded`), so a long text costs a
# few substring searches, not a regex at every position. A pattern masks what it
# matches except its ``keep`` group (the visible prefix, e.g. ``password=``); a
# ``basic`` group is masked only when it really decodes to ``user:password``.
_SHAPES: tuple[tuple[tuple[str, ...], bool, str], ...] = (
    # sk-: at a word start, or glued to a word when long and holding a digit (not "task-planning-...")
    (
        ("sk-",),
        False,
        r"sk-(?:(?<![A-Za-z0-9]sk-)(?:ant-[A-Za-z0-9_\-]{8,}|[A-Za-z0-9_\-]{16,})"
        r"|(?=[A-Za-z_\-]{0,30}[0-9])[A-Za-z0-9_\-]{20,})",
    ),
    (("k_live_", "k_test_"), False, r"[sr]k_(?<![A-Za-z0-9][sr]k_)(?:live|test)_[A-Za-z0-9]{16,}"),
    (("AKIA", "ASIA"), False, r"A(?:KI|SI)A[0-9A-Z]{16}"),
    (
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        False,
        r"gh(?:[pousr]_[A-Za-z0-9]{20,}|ithub_pat_[A-Za-z0-9_]{20,})",
    ),
    (("glpat-",), False, r"glpat-[A-Za-z0-9_\-]{20,}"),
    (("xox",), False, r"xox[abposr]-[A-Za-z0-9\-]{10,}"),
    (("AIza",), False, r"AIza[0-9A-Za-z_\-]{35}"),
    (("hf_",), False, r"hf_[A-Za-z0-9]{30,}"),
    (("eyJ",), False, r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]*)?"),
    (
        ("-----BEGIN ",), False,
        r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)",
    ),
    (
        ("authorization", "api-key", "auth-token"), True,
        r"(?P<keep_header>(?=[aApPxX])(?i:(?:proxy-)?authorization|x-api-key|api-key|x-auth-token)"
        r"[\"']?\s*[:=]\s*[\"']?)(?:(?i:basic|bearer|token|digest)\s+)?[^\s,;'\"]+",
    ),
    (("bearer",), True, r"(?P<keep_bearer>(?=[bB])(?i:bearer)\s+)[A-Za-z0-9._~+/\-]{12,}=*"),
    (("Basic",), False, r"(?P<keep_basic>Basic(?<![A-Za-z0-9]Basic)\s+)(?P<basic>[A-Za-z0-9+/]{8,}={0,2})"),
    (("://",), False, r"(?P<keep_url>://[^/\s:@\"']*:)[^/\s\"']+(?=@)"),
    (
        ("pass", "secret", "key", "token", "credential", "authorization"), True,
        rf"(?P<keep_json>(?P<q>[\"'])(?i:{_KEY_NAMES})(?P=q)\s*:\s*(?P<v>[\"']))(?:(?!(?P=v))[^\\]|\\.)*(?=(?P=v))",
    ),
    (
        ("pass", "pwd", "secret", "token", "key", "credential", "auth"), True,
        rf"(?P<keep_pair>(?=[pPsStTaAcC]){_PAIR_NAMES}\s*=\s*)"
        rf"(?:{_QUOTED_DOUBLE}|{_QUOTED_SINGLE}|[^\s&;,'\")\]}}]+)",
    ),
)

_lock = threading.Lock()
_registered: dict[str, None] = {}  # an ordered set of `register_secret` values
_registry_version = 0


class _Compiled:
    """The regular expressions, compiled once on first use (importing stays cheap)."""

    shapes: list[tuple[tuple[str, ...], bool, re.Pattern[str]]] | None = None
    any_clue: re.Pattern[str] | None = None
    env_name: re.Pattern[str] | None = None
    secret_key: re.Pattern[str] | None = None


def _compiled() -> type[_Compiled]:
    if _Compiled.shapes is None:
        _Compiled.env_name = re.compile(_SECRET_ENV_NAME, re.IGNORECASE)
        _Compiled.secret_key = re.compile(_KEY_NAMES, re.IGNORECASE)
        _Compiled.any_clue = re.compile(
            "|".join(
                f"(?i:{re.escape(clue)})" if folded else re.escape(clue)
                for clues, folded, _ in _SHAPES
                for clue in clues
            )
        )
        _Compiled.shapes = [
            (clues, folded, re.compile(pattern)) for clues, folded, pattern in _SHAPES
        ]
    return _Compiled


# -- literal secrets and their encodings ---------------------------------------------


def _escapes() -> list[Callable[[str], str]]:
    """The ways a string is escaped inside a longer text: JSON and ``repr``, each two ways."""
    import json

    return [
        lambda s: json.dumps(s)[1:-1],
        lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
        lambda s: repr(s)[1:-1],  # quotes chosen by the string alone
        lambda s: repr(s + "'\"")[1:-4],  # inside a string that holds both quotes
    ]


def _encoded_forms(secret: str) -> set[str]:
    """`secret` as it may appear in text: escaped once or twice (JSON in a repr, JSON
    in JSON...), with a JSON-escaped slash, or URL-encoded."""
    from urllib.parse import quote, quote_plus

    escapes = _escapes()
    once = {secret} | {escape(secret) for escape in escapes}
    forms = once | {escape(form) for form in once for escape in escapes}
    forms |= {form.replace("/", "\\/") for form in once}  # encoders that escape the slash
    raw = secret.encode("utf-8", "surrogateescape")  # env values may hold undecodable bytes
    for encoded in (quote(raw, safe=""), quote(raw), quote_plus(raw)):
        forms.add(encoded)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded))
    return {form for form in forms if form}


def _base64_cores(secret: str) -> set[str]:
    """The base64 text that encodes `secret` wherever it sits in a longer encoded value.

    Base64 works in 3-byte groups, so a secret at byte offset 0, 1 or 2 (mod 3)
    always yields the same inner characters; each of the three is returned, in
    the standard and the URL-safe alphabet.
    """
    import base64

    raw = secret.encode("utf-8", "surrogateescape")
    cores: set[str] = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        core = encoded[4 if shift else 0 : 4 * ((shift + len(raw)) // 3)]
        if len(core) >= 8:
            cores.add(core)
            cores.add(core.translate(str.maketrans("+/", "-_")))
    return cores


class _LiteralScan:
    """Every literal secret of one environment and registry, in all its encoded forms."""

    __slots__ = ("environ", "version", "forms", "cores", "_base64_token")

    def __init__(self, environ: Any, version: int, secrets: Iterable[str]) -> None:
        self.environ = environ
        self.version = version
        forms: set[str] = set()
        cores: set[str] = set()
        for secret in secrets:
            forms |= _encoded_forms(secret)
            cores |= _base64_cores(secret)
        # Longest first, so a secret that contains another is masked whole.
        self.forms = sorted(forms, key=len, reverse=True)
        self.cores = sorted(cores, key=len, reverse=True)
        self._base64_token: re.Pattern[str] | None = None

    def mask(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, REDACTED)
        if self.cores and any(core in text for core in self.cores):
            text = self._base64_tokens().sub(REDACTED, text)
        return text

    def _base64_tokens(self) -> re.Pattern[str]:
        """The whole base64 token around a core, so no neighbouring group leaks a byte."""
        if self._base64_token is None:
            alternatives = "|".join(re.escape(core) for core in self.cores)
            self._base64_token = re.compile(
                rf"[A-Za-z0-9+/_\-]*(?:{alternatives})[A-Za-z0-9+/_\-]*={{0,2}}"
            )
        return self._base64_token


_scan_cache: list[_LiteralScan] = []


def _environ_snapshot() -> Any:
    """What the cache is keyed on: os.environ's underlying mapping (compared, never decoded)."""
    return getattr(os.environ, "_data", os.environ)


def _literal_scan() -> _LiteralScan:
    """The cached scan; rebuilt when the environment or the registered secrets change.

    Comparing the environment's raw mapping with the copy taken at build time is
    a C-level dict comparison (identical objects compare by identity), far cheaper
    than reading every variable name again.
    """
    environ = _environ_snapshot()
    if _scan_cache:
        scan = _scan_cache[0]
        if scan.version == _registry_version and scan.environ == environ:
            return scan
    with _lock:
        secrets = _env_secrets() + list(_registered)
        scan = _LiteralScan(dict(environ), _registry_version, secrets)
        _scan_cache[:] = [scan]
    return scan


def _env_secrets() -> list[str]:
    secret_name = _compiled().env_name
    assert secret_name is not None
    return [
        value
        for name, value in os.environ.items()
        if len(value) >= _MIN_ENV_SECRET and value.strip() and secret_name.search(name)
    ]


def register_secret(value: str) -> None:
    """Mask `value` (and its encoded forms) at every boundary, from now on, in this process.

    Use it for secrets that do not live in a secret-named environment variable:
    a key read from a vault, a customer's password, an e-mail address.

    Raises:
        TypeError: `value` is not a string.
        ValueError: `value` is shorter than 4 characters (masking it would mask
            ordinary text everywhere).
    """
    global _registry_version
    if not isinstance(value, str):
        raise TypeError(f"a secret must be a str, not {type(value).__name__}")
    if len(value.strip()) < _MIN_REGISTERED_SECRET:
        raise ValueError(
            f"a secret must have at least {_MIN_REGISTERED_SECRET} non-blank characters "
            "(a shorter one would mask ordinary text)"
        )
    with _lock:
        _registered[value] = None
        _registry_version += 1


def unregister_secret(value: str) -> None:
    """Stop masking a value given to `register_secret` (nothing happens if it was not)."""
    global _registry_version
    with _lock:
        if value in _registered:
            del _registered[value]
            _registry_version += 1


# -- known shapes ---------------------------------------------------------------------


def _mask_shape(match: re.Match[str]) -> str:
    groups = match.groupdict()
    basic = groups.get("basic")
    if basic is not None and not _is_basic_credential(basic):
        return match.group(0)
    keep = next((v for k, v in groups.items() if k.startswith("keep") and v is not None), "")
    return keep + REDACTED


def _is_basic_credential(token: str) -> bool:
    """Whether a word after ``Basic`` decodes to ``user:password`` (so prose is left alone)."""
    import base64
    import binascii

    try:
        text = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return ":" in text and text.isprintable()


def _mask_shapes(text: str) -> str:
    compiled = _compiled()
    shapes, any_clue = compiled.shapes, compiled.any_clue
    assert shapes is not None and any_clue is not None
    if len(text) <= _ONE_SEARCH and any_clue.search(text) is None:
        return text  # the common short string: one regex search, no clue at all
    lowered: str | None = None
    for clues, folded, pattern in shapes:
        if folded:
            if lowered is None:
                lowered = text.lower()
            haystack = lowered
        else:
            haystack = text
        if any(clue in haystack for clue in clues):
            text, count = pattern.subn(_mask_shape, text)
            if count:
                lowered = None
    return text


# -- entry points ---------------------------------------------------------------------


def redact_text(text: str, extra: list[str] | None = None) -> str:
    """`text` with literal secrets (in any encoding), known shapes and `extra` literals masked."""
    text = _literal_scan().mask(text)
    if extra:
        text = _LiteralScan(None, -1, [s for s in extra if s]).mask(text)
    return _mask_shapes(text)


def redaction_version() -> object:
    """A value that changes whenever the secrets masked by `redact_env_values` may have
    (the environment or the registered secrets), for callers that cache a screened text."""
    return _literal_scan()


def redact_env_values(text: str) -> str:
    """`text` with only environment secrets and registered secrets masked, in any encoding.

    This is what is applied to the prompt before it reaches the provider
    (RELIABILITY I2): the model must not see the host's secrets, but a key-shaped
    string the user put in the task is the user's data and is sent as it is.
    """
    return _literal_scan().mask(text)


def redact_value(value: Any) -> Any:
    """A copy of `value` with every string in it (dict keys included) masked.

    Dicts (and subclasses) become dicts, tuples tuples, lists lists, sets sets;
    values under secret-named keys (``password``, ``api_key``, ...) are masked
    whole. Other objects are returned as they are (render them, then use
    `redact_text`). A container met again inside itself becomes ``"$circular"``;
    nesting deeper than 100 levels becomes ``"$too_deep"``.
    """
    return _Walk(_literal_scan()).copy(value, 0)


class _Walk:
    """One `redact_value` call: the scan is looked up once, not once per string."""

    __slots__ = ("scan", "active", "secret_key")

    def __init__(self, scan: _LiteralScan) -> None:
        self.scan = scan
        self.active: set[int] = set()
        secret_key = _compiled().secret_key
        assert secret_key is not None
        self.secret_key = secret_key

    def text(self, text: str) -> str:
        return _mask_shapes(self.scan.mask(text))

    def copy(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if not isinstance(value, (dict, list, tuple, set, frozenset)):
            return value
        if depth >= _MAX_DEPTH:
            return "$too_deep"
        if id(value) in self.active:
            return "$circular"
        self.active.add(id(value))
        try:
            if isinstance(value, dict):
                return self.mapping(value, depth + 1)
            items = [self.copy(item, depth + 1) for item in value]
        finally:
            self.active.discard(id(value))
        if isinstance(value, list):
            return items
        if isinstance(value, tuple):
            return tuple(items)
        return _same_kind_of_set(value, items)

    def mapping(self, value: dict[Any, Any], depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and self._holds_secret(key, item):
                masked: Any = REDACTED
            else:
                masked = self.copy(item, depth)
            new_key = self.copy(key, depth) if isinstance(key, (str, tuple)) else key
            out[_free_key(out, new_key)] = masked
        return out

    def _holds_secret(self, key: str, item: Any) -> bool:
        """A non-empty scalar under a key named like a secret (``password``, ``api_key``)."""
        if isinstance(item, bool) or not isinstance(item, (str, int, float)) or item == "":
            return False
        return self.secret_key.fullmatch(key) is not None


def _free_key(out: dict[Any, Any], key: Any) -> Any:
    """`key`, or ``key#2``, ``key#3``... when masking made two keys equal (no value is lost)."""
    if key not in out or not isinstance(key, str):
        return key
    n = 2
    while f"{key}#{n}" in out:
        n += 1
    return f"{key}#{n}"


def _same_kind_of_set(original: Any, items: list[Any]) -> Any:
    try:
        return frozenset(items) if isinstance(original, frozenset) else set(items)
    except TypeError:  # an item became unhashable; a list keeps every value
        return items
