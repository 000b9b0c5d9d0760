"""Tests of the soak's verdict: python3 -m unittest discover -s scripts -p 'test_*.py'."""

import random
import statistics
import unittest
from itertools import combinations
from math import comb, inf

from soak_verdict import drift, halves, judge, second_half_ranks_higher


def brute_force_p(first: list[float], second: list[float]) -> float:
    """The same p-value by listing every way the pooled values could split into two halves
    of these sizes (no ties), counting the splits whose U is at least the observed one."""
    pooled = sorted(first + second)
    observed = sum(b > a for a in first for b in second)
    m, hits = len(first), 0
    for chosen in combinations(range(len(pooled)), m):
        as_first = [pooled[i] for i in chosen]
        as_second = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        hits += sum(b > a for a in as_first for b in as_second) >= observed
    return hits / comb(len(pooled), m)


class MannWhitney(unittest.TestCase):
    def test_five_against_five_matches_the_published_table(self) -> None:
        first = [1.0, 2.0, 3.0, 4.0, 5.0]
        # Every second-half value above every first-half one: 1 ordering in 252.
        self.assertAlmostEqual(second_half_ranks_higher(first, [6.0, 7, 8, 9, 10]), 1 / 252)
        # Four pairs the other way round (U = 21 of 25): 0.0476, the table's critical value.
        self.assertAlmostEqual(second_half_ranks_higher(first, [1.5, 6, 7, 8, 9]), 12 / 252)
        # Five (U = 20): 0.0754, no longer significant at 0.05.
        self.assertAlmostEqual(second_half_ranks_higher(first, [0.5, 6, 7, 8, 9]), 19 / 252)
        # Reversed halves: every ordering has U >= 0.
        self.assertAlmostEqual(second_half_ranks_higher([6.0, 7, 8, 9, 10], first), 1.0)

    def test_unequal_and_larger_halves_agree_with_listing_every_split(self) -> None:
        cases = [
            ([3.1, 0.4, 2.2], [5.0, 1.1, 4.4, 0.2]),
            ([10.0, 300, 12, 15, 20, 7], [30.0, 25, 400, 11, 28, 9]),
            ([2.0, 4, 6, 8, 10, 12, 14], [1.0, 3, 5, 7, 9, 11, 13]),
        ]
        for first, second in cases:
            self.assertAlmostEqual(second_half_ranks_higher(first, second), brute_force_p(first, second))

    def test_a_tie_counts_half_and_never_makes_drift_easier_to_declare(self) -> None:
        # U = 24.5: rounded down, so p is that of U >= 24 (2/252), not of U = 25.
        p = second_half_ranks_higher([1.0, 2, 3, 4, 6], [6.0, 7, 8, 9, 10])
        self.assertAlmostEqual(p, 2 / 252)


class Drift(unittest.TestCase):
    def test_halves_are_equal_and_an_odd_middle_minute_belongs_to_neither(self) -> None:
        self.assertEqual(halves([1, 2, 3, 4, 5]), ([1, 2], [4, 5]))
        self.assertEqual(halves([1, 2, 3, 4]), ([1, 2], [3, 4]))

    def test_heavy_tailed_noise_without_a_trend_is_not_drift(self) -> None:
        # A steady server's minutes: one stall's backlog in each half, medians 1.9 times
        # apart by chance, ranks mixed.
        d = drift([10.0, 300, 12, 15, 20, 30, 25, 400, 11, 28])
        assert d is not None
        self.assertGreater(d.ratio, 1.5)
        assert d.p_value is not None
        self.assertGreater(d.p_value, 0.05)
        self.assertFalse(d.drifted)

    def test_a_rise_that_ranks_higher_and_exceeds_the_ratio_is_drift(self) -> None:
        # The generator's p99 of a soak that offered too close to capacity (PERFORMANCE.md).
        d = drift([60.06, 30.73, 45.70, 61.53, 191.74, 193.28, 262.91, 49.28, 144.77, 444.67])
        assert d is not None and d.p_value is not None
        self.assertAlmostEqual(d.p_value, 12 / 252)
        self.assertTrue(d.drifted)

    def test_a_significant_but_small_rise_is_not_drift(self) -> None:
        d = drift([2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9])
        assert d is not None and d.p_value is not None
        self.assertLess(d.p_value, 0.05)
        self.assertFalse(d.drifted)

    def test_steady_minutes_in_any_order_rarely_fail(self) -> None:
        # The per-minute p99s (ms) of the four passing 10-minute soaks in PERFORMANCE.md:
        # minutes drawn from them at random have no trend, so every FAIL is a false one.
        steady = [31.57, 7.92, 12.91, 16.48, 18.57, 11.54, 9.10, 12.17, 8.53, 15.88,
                  13.66, 11.51, 38.21, 23.54, 28.37, 20.54, 26.41, 50.53, 22.34, 13.45,
                  139.65, 286.46, 22.16, 6.36, 19.20, 9.01, 11.36, 15.00, 11.42, 78.66,
                  225.4, 33.4, 26.9, 43.3, 75.2, 45.3, 3223.6, 51.5, 19.6, 8.3]  # fmt: skip
        draws = random.Random(7)
        runs = [[draws.choice(steady) for _ in range(10)] for _ in range(2000)]
        by_ratio = sum(statistics.median(r[5:]) > 1.5 * statistics.median(r[:5]) for r in runs)
        by_verdict = sum(drift(r).drifted for r in runs)  # type: ignore[union-attr]
        # The ratio alone fails about a quarter of them; the verdict under one in twenty.
        self.assertGreater(by_ratio / len(runs), 0.2)
        self.assertLess(by_verdict / len(runs), 0.05)

    def test_short_runs_are_judged_by_the_ratio_alone(self) -> None:
        rising = drift([1.0, 1.0, 5.0, 5.0])
        assert rising is not None
        self.assertIsNone(rising.p_value)
        self.assertTrue(rising.drifted)
        self.assertIsNone(drift([3.0]))


class Judge(unittest.TestCase):
    def setUp(self) -> None:
        self.steady = [10.0, 300, 12, 15, 20, 30, 25, 400, 11, 28]
        self.server = [3.0, 3.1, 2.9, 2.5, 2.7, 2.3, 2.6, 2.8, 2.7, 3.6]
        self.rss = [34.5, 34.6, 34.7, 34.8, 34.9, 35.0, 35.3, 35.3, 35.4, 35.4]

    def test_a_steady_run_passes(self) -> None:
        ok, lines = judge(self.steady, self.server, self.rss, 0)
        self.assertTrue(ok, lines)
        self.assertEqual(lines[-1], "PASS")
        self.assertIn("largest growth since: +0.9 MiB", lines[0])

    def test_memory_growth_errors_or_a_drifting_server_fail(self) -> None:
        grown = self.rss[:-1] + [self.rss[0] + 5.1]
        self.assertFalse(judge(self.steady, self.server, grown, 0)[0])
        self.assertFalse(judge(self.steady, self.server, self.rss, 1)[0])
        drifting = [2.0, 2.1, 2.2, 2.3, 2.4, 4.0, 4.5, 5.0, 5.5, inf]
        ok, lines = judge(self.steady, drifting, self.rss, 0)
        self.assertFalse(ok)
        server_lines = [line for line in lines if line.startswith("server's own p99")]
        self.assertEqual(len(server_lines), 1)
        self.assertIn("DRIFTED", server_lines[0])


if __name__ == "__main__":
    unittest.main()
