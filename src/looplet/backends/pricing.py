"""Cost accounting from a price table you pass in: looplet ships no prices, since they change.

    prices = {"gpt-4o-mini": ModelPrice(input=0.15, output=0.60, cached_input=0.075)}
    llm = OpenAIBackend.from_env(model="gpt-4o-mini", prices=prices)

Prices are in your currency per million tokens. `Usage.input_tokens` counts
every prompt token, cached ones included; cached tokens are charged at
`ModelPrice.cached_input` (or the input price when that is not given).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from ..types import Usage

__all__ = ["ModelPrice", "PriceTable", "cost_of", "price_for"]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices per million tokens: prompt, completion, and prompt tokens read from the cache."""

    input: float
    output: float
    cached_input: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"ModelPrice.{name} must be >= 0, got {value!r}")


#: Model name (or name prefix, e.g. ``"gpt-4o"`` for ``"gpt-4o-2024-08-06"``) to its prices.
PriceTable = Mapping[str, ModelPrice | tuple[float, float] | tuple[float, float, float]]


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


def cost_of(usage: Usage, model: str, table: PriceTable | None) -> float:
    """What `usage` cost on `model` (0.0 when the table has no entry for it)."""
    if not table:
        return 0.0
    price = price_for(model, table)
    if price is None:
        return 0.0
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    total = (
        (usage.input_tokens - cached) * price.input
        + cached * cached_price
        + usage.output_tokens * price.output
    )
    return total / 1_000_000
