"""One registry type for op knowledge, keyed by (domain, op type, opset range).

Every table of op facts and rules in this package is an :class:`OpRegistry`. A lookup names the node's domain,
op type and the model's opset for that domain; an entry applies from ``since`` (inclusive) to ``until``
(exclusive, None = open). An op without an entry for that opset has no rule: callers record that and leave the
node alone, they never guess.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: the default ONNX domain under its two spellings
DEFAULT_DOMAINS = ("", "ai.onnx")


def norm_domain(domain: str | None) -> str:
    """'' for the default ONNX domain (written '', 'ai.onnx' or absent), else the domain as given."""
    return "" if domain in (None, *DEFAULT_DOMAINS) else str(domain)


@dataclass(frozen=True)
class OpKey:
    """Where an entry applies: one op type of one domain over a half-open opset range [since, until)."""

    op: str
    domain: str = ""
    since: int = 1
    until: int | None = None

    def covers(self, opset: int | None) -> bool:
        if opset is None:
            return True
        return self.since <= opset and (self.until is None or opset < self.until)


class OpRegistry(Generic[T]):
    """A small, declarative table: ``register(op, value, since=..., until=...)``, ``lookup(op, domain, opset)``."""

    def __init__(self, name: str):
        self.name = name
        self._entries: dict[tuple[str, str], list[tuple[OpKey, T]]] = {}

    def register(self, op: str, value: T, *, domain: str = "", since: int = 1, until: int | None = None) -> None:
        key = OpKey(op, norm_domain(domain), since, until)
        entries = self._entries.setdefault((key.domain, op), [])
        for other, _ in entries:
            if _overlap(key, other):
                raise ValueError(f"{self.name}: {op} opsets [{since}, {until}) overlap [{other.since}, {other.until})")
        entries.append((key, value))

    def register_all(self, ops: str | list[str] | tuple[str, ...], value: T, *, domain: str = "", since: int = 1,
                     until: int | None = None) -> None:
        for op in ops.split() if isinstance(ops, str) else ops:
            self.register(op, value, domain=domain, since=since, until=until)

    def lookup(self, op: str, domain: str | None = "", opset: int | None = None) -> T | None:
        """The entry for ``op`` in ``domain`` at ``opset`` (None = any opset: the newest entry)."""
        entries = self._entries.get((norm_domain(domain), op), [])
        hits = [(k, v) for k, v in entries if k.covers(opset)]
        if not hits:
            return None
        return max(hits, key=lambda kv: kv[0].since)[1]

    def __contains__(self, op: str) -> bool:
        return ("", op) in self._entries

    def ops(self, domain: str = "") -> list[str]:
        return sorted(op for d, op in self._entries if d == norm_domain(domain))

    def keys(self) -> Iterator[OpKey]:
        for entries in self._entries.values():
            for key, _ in entries:
                yield key


def _overlap(a: OpKey, b: OpKey) -> bool:
    a_end = a.until if a.until is not None else 10**9
    b_end = b.until if b.until is not None else 10**9
    return a.since < b_end and b.since < a_end
