"""A speed-up that can be trusted: repeated interleaved A/B rounds, the median ratio and a distribution-free bound.

One round times both models interleaved (A B B A ...) for a few runs each and gives one ratio,
``median(reference run times) / median(candidate run times)``. Rounds repeat until the confidence interval of the
median ratio is narrow (relative to the median) or the time budget is spent. The interval comes from order
statistics, which need no assumption about the noise: with n round ratios sorted, the k-th smallest lies below the
true median with probability ``P(Binomial(n, 1/2) >= k)``, so the largest k whose tail ``P(Binomial(n, 1/2) < k)``
is at most ``(1 - confidence) / 2`` gives the lower bound (and the k-th largest the upper bound). With too few
rounds for that (n = 4 at 90%), the bound is the smallest ratio seen. ``min_speedup`` is judged on the lower bound,
so a noisy machine makes the gate stricter, never laxer.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]


def order_statistic_rank(n: int, confidence: float) -> int:
    """The largest k (1-based; 0 = none) with P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2."""
    alpha = (1.0 - confidence) / 2.0
    tail, k = 0.0, 0
    for i in range(n):
        tail += math.comb(n, i) / 2.0 ** n  # P(B <= i) = P(B < i + 1)
        if tail > alpha:
            break
        k = i + 1
    return min(k, (n + 1) // 2)


def median_bounds(ratios: Sequence[float], confidence: float) -> tuple[float, float, bool]:
    """(lower, upper, exact): the distribution-free confidence interval of the median of ``ratios``; ``exact`` is
    False when there are too few values for ``confidence`` and the extremes are returned instead."""
    values = sorted(ratios)
    k = order_statistic_rank(len(values), confidence)
    if k == 0:
        return values[0], values[-1], False
    return values[k - 1], values[len(values) - k], True


@dataclass(frozen=True)
class SpeedupEstimate:
    """The speed-up of a candidate over a reference from A/B rounds: the median of the round ratios, its
    ``confidence`` interval [lower, upper], the relative spread (upper - lower) / median, and why the rounds
    stopped."""

    median: float
    lower: float
    upper: float
    confidence: float
    rounds: int
    runs_per_round: int
    spread: float
    exact: bool
    stopped: str
    ratios: tuple[float, ...]

    def describe(self) -> str:
        how = f"{self.confidence:.0%} interval" if self.exact else "smallest/largest (too few rounds for an interval)"
        return (f"median {self.median:.3f}x over {self.rounds} rounds, {how} {self.lower:.3f}-{self.upper:.3f}x "
                f"(spread {self.spread:.1%})")

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "lower": self.lower, "upper": self.upper, "confidence": self.confidence,
                "rounds": self.rounds, "runs_per_round": self.runs_per_round, "spread": self.spread,
                "exact_interval": self.exact, "stopped": self.stopped, "ratios": [round(r, 5) for r in self.ratios]}


def estimate(ratios: Sequence[float], confidence: float, runs_per_round: int, stopped: str) -> SpeedupEstimate:
    med = statistics.median(ratios)
    lower, upper, exact = median_bounds(ratios, confidence)
    spread = (upper - lower) / med if med > 0 else math.inf
    return SpeedupEstimate(med, lower, upper, confidence, len(ratios), runs_per_round, spread, exact, stopped,
                           tuple(ratios))


def _one_round(fns: Mapping[str, Callable[[], Any]], runs: int, clock: Clock, samples: dict[str, list[float]],
               flip: bool) -> dict[str, list[float]]:
    names = list(fns)
    round_samples: dict[str, list[float]] = {n: [] for n in names}
    for i in range(runs):
        for name in (names if (i % 2 == 0) != flip else names[::-1]):
            start = clock()
            fns[name]()
            elapsed = clock() - start
            round_samples[name].append(elapsed)
            samples[name].append(elapsed)
    return round_samples


def _ratio(round_samples: dict[str, list[float]], reference: str, candidate: str) -> float:
    cand = statistics.median(round_samples[candidate])
    return statistics.median(round_samples[reference]) / cand if cand > 0 else math.inf


def ab_rounds(fns: Mapping[str, Callable[[], Any]], config, *, clock: Clock = time.perf_counter,
              on_round: Callable[[], None] | None = None) -> tuple[dict[str, list[float]], SpeedupEstimate]:
    """Time two functions (reference first, candidate second; warmed up already) in interleaved rounds, as set by
    a ProfileConfig (``min_rounds``, ``max_rounds``, ``max_spread``, ``time_budget_s``, ``confidence``,
    ``round_iterations``). Returns every run's seconds per function and the speed-up estimate."""
    reference, candidate = list(fns)
    samples: dict[str, list[float]] = {n: [] for n in fns}
    ratios: list[float] = []
    start = clock()
    stopped = f"max_rounds ({config.max_rounds}) reached"
    for r in range(config.max_rounds):
        ratios.append(_ratio(_one_round(fns, config.round_iterations, clock, samples, flip=r % 2 == 1),
                             reference, candidate))
        if on_round is not None:
            on_round()
        if len(ratios) < config.min_rounds:
            continue
        est = estimate(ratios, config.confidence, config.round_iterations, "")
        if est.exact and est.spread <= config.max_spread:
            stopped = f"spread {est.spread:.1%} <= {config.max_spread:.1%}"
            break
        if clock() - start >= config.time_budget_s:
            stopped = f"time budget {config.time_budget_s:g} s spent (spread {est.spread:.1%})"
            break
    return samples, estimate(ratios, config.confidence, config.round_iterations, stopped)
