"""Minimum s-t cut (Dinic's max-flow) for the placement's binary labelling: deterministic, float capacities.

Nodes are small integers; :meth:`MinCut.add` adds a directed edge (and its zero-capacity reverse). After
:meth:`solve`, :meth:`source_side` is the set of nodes still reachable from the source in the residual graph:
the source side of a minimum cut. Capacities below ``EPS`` count as saturated, so float round-off cannot leave a
spurious augmenting path. Edges are visited in insertion order: the same graph always gives the same cut.
"""

from __future__ import annotations

from collections import deque

INF = float("inf")
EPS = 1e-9


class MinCut:
    def __init__(self) -> None:
        self.head: list[list[int]] = []  # node -> edge indices
        self.to: list[int] = []
        self.cap: list[float] = []
        self.source = self.node()
        self.sink = self.node()

    def node(self) -> int:
        self.head.append([])
        return len(self.head) - 1

    def add(self, u: int, v: int, capacity: float) -> None:
        if capacity <= 0 or u == v:
            return
        self.head[u].append(len(self.to))
        self.to.append(v)
        self.cap.append(capacity)
        self.head[v].append(len(self.to))
        self.to.append(u)
        self.cap.append(0.0)

    def _levels(self) -> list[int] | None:
        level = [-1] * len(self.head)
        level[self.source] = 0
        queue = deque([self.source])
        while queue:
            u = queue.popleft()
            for e in self.head[u]:
                if self.cap[e] > EPS and level[self.to[e]] < 0:
                    level[self.to[e]] = level[u] + 1
                    queue.append(self.to[e])
        return level if level[self.sink] >= 0 else None

    def _augment(self, level: list[int], it: list[int]) -> float:
        """One blocking-flow path found by an explicit-stack DFS (no recursion limit on deep graphs)."""
        stack: list[tuple[int, float]] = [(self.source, INF)]
        path: list[int] = []
        while stack:
            u, f = stack[-1]
            if u == self.sink:
                pushed = f
                for e in path:
                    self.cap[e] -= pushed
                    self.cap[e ^ 1] += pushed
                return pushed
            advanced = False
            while it[u] < len(self.head[u]):
                e = self.head[u][it[u]]
                v = self.to[e]
                if self.cap[e] > EPS and level[v] == level[u] + 1:
                    stack.append((v, min(f, self.cap[e])))
                    path.append(e)
                    advanced = True
                    break
                it[u] += 1
            if not advanced:
                stack.pop()
                if path:
                    path.pop()
                if stack:
                    it[stack[-1][0]] += 1
        return 0.0

    def solve(self) -> float:
        """The max-flow value (= the minimum cut's capacity)."""
        total = 0.0
        while (level := self._levels()) is not None:
            it = [0] * len(self.head)
            while (pushed := self._augment(level, it)) > EPS:
                total += pushed
        return total

    def source_side(self) -> set[int]:
        seen = {self.source}
        queue = deque([self.source])
        while queue:
            u = queue.popleft()
            for e in self.head[u]:
                if self.cap[e] > EPS and self.to[e] not in seen:
                    seen.add(self.to[e])
                    queue.append(self.to[e])
        return seen
