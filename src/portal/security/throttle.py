"""Budgets for requests that are cheap to send and expensive or revealing to answer:
looking up the two numbers from a bill (Pay My Bill, registration, Add another account)
and the per-field password check (seconds of CPU for a strength estimate).

Each budget counts per network (an IPv4 address or an IPv6 /64) and overall, in a
sliding window, in this process's memory: the portal runs as one process (see
docs), and a restart forgets the counts, which only ever errs toward the resident.
A refusal raises `Throttled`, which the error handler answers with a 429 page that says
how long to wait and gives the Customer Services phone; the first refusal of each
network in a window is audited (not every one, so a flood cannot flood the log).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from litestar.exceptions import HTTPException

from portal.accounts import audit
from portal.accounts.signin import network

MAX_KEYS = 100_000  # past this many networks, the quietest are forgotten first


class Throttled(HTTPException):
    status_code = 429

    def __init__(self, wait_seconds: float, budget: str) -> None:
        super().__init__(detail=f"throttled: {budget}")
        self.wait_minutes = max(1, math.ceil(wait_seconds / 60))
        self.budget = budget
        self.headers = {"Retry-After": str(max(1, math.ceil(wait_seconds)))}


@dataclass
class Budget:
    name: str
    per_network: int
    overall: int
    window: float  # seconds
    _seen: dict[str, deque] = field(default_factory=dict)
    _all: deque = field(default_factory=deque)
    _refused: dict[str, float] = field(default_factory=dict)

    def _prune(self, times: deque, now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def spend(self, client: str, now: float | None = None) -> tuple[float, bool]:
        """Spend one try for this client: (seconds to wait or 0, first refusal in this
        window for the network — worth an audit row)."""
        now = time.monotonic() if now is None else now
        key = network(client)
        self._prune(self._all, now)
        mine = self._seen.get(key)
        if mine is None:
            if len(self._seen) >= MAX_KEYS:
                self._forget(now)
            mine = self._seen[key] = deque()
        self._prune(mine, now)
        if len(mine) >= self.per_network:
            wait = mine[0] + self.window - now
        elif len(self._all) >= self.overall:
            wait = self._all[0] + self.window - now
        else:
            mine.append(now)
            self._all.append(now)
            return 0.0, False
        first = self._refused.get(key, -math.inf) <= now - self.window
        if first:
            self._refused[key] = now
        return max(wait, 1.0), first

    def _forget(self, now: float) -> None:
        for key in [
            k for k, times in self._seen.items() if not times or times[-1] <= now - self.window
        ]:
            del self._seen[key]
        while len(self._seen) >= MAX_KEYS:
            del self._seen[next(iter(self._seen))]


async def enforce(budget: Budget, db, client: str, path: str) -> None:
    """Spend one try from `budget`, or raise Throttled (auditing the first refusal)."""
    wait, first = budget.spend(client)
    if not wait:
        return
    if first:
        await audit.write(
            db, "throttled", client=client, detail=f"budget={budget.name} path={path}"
        )
    raise Throttled(wait, budget.name)
