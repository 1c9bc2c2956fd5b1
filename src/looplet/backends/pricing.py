"""Cost accounting from a price table you pass in: looplet ships no prices, since they change.

    prices = {"gpt-4o-mini": ModelPrice(input=0.15, output=0.60, cached_input=0.075)}
    llm = OpenAIBackend.from_env(model="gpt-4o-mini", prices=prices)

Prices are in your currency per million tokens. `Usage.input_tokens` counts
every prompt token, cached ones included; cached tokens are charged at
`ModelPrice.cached_input` (or the input price when that is not given).
Tokens written to a provider's cache (Anthropic reports them as
``cache_creation_input_tokens``) are part of `Usage.input_tokens` too, and
are charged at `ModelPrice.cache_write` (``cache_write_1h`` for the one-hour
lifetime), or at the input price when those are not given: Anthropic
charges 1.25 times the input price for a five-minute write and twice it for
a one-hour write, so set them to get the real cost::

    prices = {"claude-sonnet-4-5": ModelPrice(input=3.0, output=15.0, cached_input=0.3,
                                              cache_write=3.75, cache_write_1h=6.0)}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from ..types import Usage

__all__ = ["ModelPrice", "PriceTable", "cost_of", "price_for"]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices per million tokens: prompt, completion, prompt tokens read from and written to the cache.

    A price left as None is the input price (``cache_write_1h``: the
    ``cache_write`` price, else the input price).
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input", "cache_write", "cache_write_1h"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"ModelPrice.{name} must be >= 0, got {value!r}")


#: Model name (or name prefix, e.g. ``"gpt-4o"`` for ``"gpt-4o-2024-08-06"``) to its prices
#: (a tuple is the fields of `ModelPrice` in order).
PriceTable = Mapping[
    str,
    ModelPrice
    | tuple[float, float]
    | tuple[float, float, float]
    | tuple[float, float, float, float]
    | tuple[float, float, float, float, float],
]


def price_for(model: str, table: PriceTable) -> ModelPrice | None:
    """The entry for `model`: an exact match, else the longest name that is a prefix of it."""
    entry = table.get(model)
    if entry is None:
        prefixes = [name for name in table if model.startswith(name)]
        if not prefixes:
            return None
        entry = table[max(prefixes, key=len)]
    if isinstance(entry, ModelPrice):
        return entry
    return ModelPrice(*entry)


def cost_of(
    usage: Usage,
    model: str,
    table: PriceTable | None,
    *,
    cache_writes: int | None = None,
    cache_writes_1h: int = 0,
) -> float:
    """What `usage` cost on `model` (0.0 when the table has no entry for it).

    Args:
        cache_writes: of ``usage.input_tokens``, how many were written to the
            cache (all lifetimes); None reads ``usage.cache_write_tokens`` when
            `Usage` has that field, else 0.
        cache_writes_1h: of those, how many were written for one hour.

    Every input token is charged once, at one price: read from the cache,
    written to it for an hour, written for five minutes, or plain input. The
    counts are bounded by what `usage` holds, so a provider reporting more
    cached or written tokens than input tokens cannot make the cost negative.
    """
    if not table:
        return 0.0
    price = price_for(model, table)
    if price is None:
        return 0.0
    if cache_writes is None:  # the field a later `Usage` may carry; absent today
        cache_writes = getattr(usage, "cache_write_tokens", 0)
    total = max(usage.input_tokens, 0)
    cached = min(max(usage.cached_tokens, 0), total)
    written = min(max(cache_writes or 0, 0), total - cached)
    written_1h = min(max(cache_writes_1h, 0), written)
    plain = total - cached - written
    cached_price = price.input if price.cached_input is None else price.cached_input
    write_price = price.input if price.cache_write is None else price.cache_write
    write_1h_price = write_price if price.cache_write_1h is None else price.cache_write_1h
    cost = (
        plain * price.input
        + cached * cached_price
        + (written - written_1h) * write_price
        + written_1h * write_1h_price
        + usage.output_tokens * price.output
    )
    return cost / 1_000_000
