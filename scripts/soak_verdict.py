"""The verdict of scripts/soak.sh: memory growth, errors, and whether p99 drifted.

A minute's p99 under an open loop is heavy-tailed: one disk stall and the backlog it leaves
can raise that minute's p99 forty-fold while the next minute is back to normal
(docs/PERFORMANCE.md, "Soak"). Comparing the two halves' medians alone therefore failed
about one trend-free run in four (3.8% with this verdict). Here p99 has drifted only when both
hold: the second half's minutes rank above the first half's beyond chance (a one-sided exact
Mann-Whitney test, p < 0.05), and the second half's median is over 1.5 times the first's.
With fewer than four minutes a half no ranking can reach p < 0.05, so the ratio decides alone.

Usage: python3 scripts/soak_verdict.py WORK MINUTES (soak.sh's files: minute-M.json, rss-M,
server-p99-M). Exit 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from math import comb, floor, inf
from pathlib import Path
from typing import Any

RSS_GROWTH_LIMIT_MIB = 5.0
DRIFT_RATIO_LIMIT = 1.5
DRIFT_SIGNIFICANCE = 0.05
# The smallest half for which some ranking reaches p < 0.05 (1/70 at four against four).
MIN_RANKED_HALF = 4


def failed_answers(minute: dict[str, Any]) -> int:
    """What one minute's `zt bench --json` counted as not answered as asked: transport errors,
    unexpected statuses, rate limits and refused credentials."""
    return int(minute["errors"] + minute["other_status"] + minute["rate_limited"] + minute["unauthenticated"])


def halves(values: list[float]) -> tuple[list[float], list[float]]:
    """The first and the last half, equal in size (an odd middle minute belongs to neither)."""
    half = len(values) // 2
    return values[:half], values[len(values) - half :]


def _null_counts(m: int, n: int) -> list[int]:
    """How many of the C(m+n, m) orderings of two samples give each U from 0 to m*n."""
    # After round i, counts[j][u] is the number of orderings of i first-half and j
    # second-half values whose U is u. Of those i + j values the largest is either a
    # first-half one (it adds no pair) or a second-half one (it exceeds all i: i pairs).
    counts = [[1] + [0] * (m * n) for _ in range(n + 1)]
    for i in range(1, m + 1):
        nxt = [[0] * (m * n + 1) for _ in range(n + 1)]
        nxt[0][0] = 1
        for j in range(1, n + 1):
            for u in range(m * n + 1):
                nxt[j][u] = counts[j][u] + (nxt[j - 1][u - i] if u >= i else 0)
        counts = nxt
    return counts[n]


def second_half_ranks_higher(first: list[float], second: list[float]) -> float:
    """One-sided exact Mann-Whitney p-value that `second` tends to exceed `first`.

    U counts the pairs in which the second half's value is the larger (a tie counts half);
    the p-value is the share of all orderings with a U at least as large, ties rounded in
    the direction that makes drift harder to declare.
    """
    if not first or not second:
        return 1.0
    observed = sum(1.0 if b > a else 0.5 if b == a else 0.0 for a in first for b in second)
    counts = _null_counts(len(first), len(second))
    at_least = sum(counts[floor(observed) :])
    return at_least / comb(len(first) + len(second), len(first))


@dataclass
class Drift:
    """One series' drift between the halves."""

    first_median: float
    second_median: float
    ratio: float
    p_value: float | None  # None when the halves are too short to rank
    drifted: bool

    def describe(self, name: str) -> str:
        ranked = (
            f", ranked higher with p = {self.p_value:.3f} (drift needs p < {DRIFT_SIGNIFICANCE})"
            if self.p_value is not None
            else f" (under {MIN_RANKED_HALF} minutes a half: the ratio decides alone)"
        )
        return (
            f"{name} median, first half {self.first_median:.2f} ms, second half "
            f"{self.second_median:.2f} ms: ratio {self.ratio:.2f} (limit {DRIFT_RATIO_LIMIT:.2f})"
            f"{ranked}: {'DRIFTED' if self.drifted else 'steady'}"
        )


def drift(values: list[float]) -> Drift | None:
    """Compares the halves of a per-minute series; None with fewer than two minutes."""
    first, second = halves(values)
    if not first:
        return None
    a, b = statistics.median(first), statistics.median(second)
    ratio = b / a if a > 0 else inf
    if len(first) < MIN_RANKED_HALF:
        return Drift(a, b, ratio, None, ratio > DRIFT_RATIO_LIMIT)
    p = second_half_ranks_higher(first, second)
    return Drift(a, b, ratio, p, ratio > DRIFT_RATIO_LIMIT and p < DRIFT_SIGNIFICANCE)


def judge(
    generator_p99: list[float], server_p99: list[float], rss_mib: list[float], errors: int
) -> tuple[bool, list[str]]:
    """PASS or FAIL with the lines that explain it."""
    growth = max(rss_mib) - rss_mib[0]
    lines = [
        (
            f"rss after minute 1: {rss_mib[0]:.1f} MiB, largest growth since: {growth:+.1f} MiB "
            f"(limit +{RSS_GROWTH_LIMIT_MIB:.1f})"
        )
    ]
    ok = growth <= RSS_GROWTH_LIMIT_MIB and errors == 0
    for name, series in (("p99", generator_p99), ("server's own p99", server_p99)):
        d = drift(series)
        if d is None:
            lines.append(f"{name}: too few minutes to compare halves")
            continue
        lines.append(d.describe(name))
        ok = ok and not d.drifted
    lines.append(f"errors: {errors}")
    lines.append("PASS" if ok else "FAIL")
    return ok, lines


def main(work: Path, minutes: int) -> int:
    runs = [json.loads((work / f"minute-{m}.json").read_text()) for m in range(1, minutes + 1)]
    rss = [int((work / f"rss-{m}").read_text()) / 1024 for m in range(1, minutes + 1)]
    errors = sum(failed_answers(r) for r in runs)
    # "inf": the server's p99 lay beyond its histogram's last bucket (it ranks above every
    # other minute); empty: no answers on record that minute (left out).
    server = [(work / f"server-p99-{m}").read_text().strip() for m in range(1, minutes + 1)]
    ok, lines = judge(
        [r["latency_ms"]["p99"] for r in runs],
        [float(v) for v in server if v],
        rss,
        errors,
    )
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))
