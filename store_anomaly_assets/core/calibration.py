"""Calibrated scores for estimated parameters, exact count tails, and run lengths.

The guide's z divides by a standard deviation estimated from 28 days as if it were the
true one, so "beyond 3 sigma" fires more often than the normal 0.135% tail. A new value
against a baseline of n values with sample mean m and sample std s follows, in control,
(x - m) / (s * sqrt(1 + 1/n)) ~ t with n - 1 degrees of freedom (the prediction
interval). The calibrated z is the normal quantile of that t tail probability, so a
calibrated z beyond 3 has the 3-sigma tail whatever n is.

Run lengths (ARL) come from Markov chains: Brook and Evans for the CUSUM, and a chain
over the recent zone history for the Western Electric rules. They document the
detectors as configured and are the references the tests check.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy import sparse, special, stats
from scipy.sparse.linalg import spsolve

# Calibrated z is bounded so that a value far outside any plausible range (a zero day on
# the log scale) still has a finite score; beyond this no tail probability is meaningful.
Z_LIMIT = 38.0


def calibrated_z(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Normal quantile of the t(df) tail probability of `t`, with the sign of `t`.

    Computed from the log tail so that large |t| keeps its order instead of saturating.
    NaN in, NaN out.
    """
    t = np.asarray(t, dtype=float)
    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tail = -special.ndtri_exp(stats.t.logsf(np.abs(t), df))
    return np.clip(np.sign(t) * tail, -Z_LIMIT, Z_LIMIT)


def prediction_multiplier(k: float, n: np.ndarray) -> np.ndarray:
    """Half-width of the calibrated k-sigma limit in units of the baseline std.

    A new value is beyond calibrated z = k exactly when it is beyond
    mean +/- t_{n-1}(Phi(k)) * sqrt(1 + 1/n) * std.
    """
    n = np.asarray(n, dtype=float)
    # Baseline sizes take a few dozen values: the t quantile once per size.
    sizes, position = np.unique(n, return_inverse=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_size = stats.t.ppf(special.ndtr(k), sizes - 1) * np.sqrt(1 + 1 / sizes)
    return per_size[position].reshape(n.shape)


def poisson_z(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Calibrated z of a count against a Poisson mean, from the exact tails.

    Below the mean: the normal quantile of P(X <= x); above it: minus that of P(X >= x);
    0 when neither tail is below one half. A count needs no normal approximation: a crew
    of 4 is not a continuous quantity with a 1-person standard deviation.
    """
    x = np.asarray(x, dtype=float)
    mean = np.asarray(mean, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = stats.poisson.logcdf(x, mean)
        high = stats.poisson.logsf(x - 1, mean)
        z = np.where(low < np.log(0.5), special.ndtri_exp(low),
                     np.where(high < np.log(0.5), -special.ndtri_exp(high), 0.0))
    z = np.where(np.isnan(x) | np.isnan(mean), np.nan, z)
    return np.clip(z, -Z_LIMIT, Z_LIMIT)


def poisson_limit(k: float, mean: np.ndarray) -> np.ndarray:
    """The count at calibrated z = k for a Poisson mean (k < 0: lower, k > 0: upper)."""
    mean = np.asarray(mean, dtype=float)
    with np.errstate(invalid="ignore"):
        return stats.poisson.ppf(special.ndtr(k), mean)


def truncated_variance(c: float) -> float:
    """Variance of a standard normal truncated to [-c, c]: 1 - 2c phi(c) / (2 Phi(c) - 1).

    A baseline that leaves out the days beyond c sigmas underestimates the in-control
    std by its square root; the standard profile divides it back out.
    """
    inside = 2 * float(special.ndtr(c)) - 1
    return 1 - 2 * c * float(np.exp(-c * c / 2)) / np.sqrt(2 * np.pi) / inside


def capped_cusum(steps: np.ndarray, series: np.ndarray, cap: float) -> np.ndarray:
    """S_t = min(cap, max(0, S_(t-1) + step_t)) from S = 0, for rows grouped by series.

    `series` labels contiguous runs of rows (one per series, in time order). The cap
    bounds how long the statistic stays above its decision interval once a shift has
    been absorbed by the baseline (the run length to the first signal is unchanged for a
    cap at or above it). Each step is the map s -> clamp(s + a, lo, hi); maps of that
    form compose into the same form, so the recursion is a prefix scan done in log2(n)
    vectorized passes over all series at once, not a loop over days.
    """
    steps = np.asarray(steps, dtype=float)
    if steps.size == 0:
        return steps.copy()
    starts = np.flatnonzero(np.r_[True, series[1:] != series[:-1]])
    lengths = np.diff(np.r_[starts, steps.size])
    row = np.repeat(np.arange(starts.size), lengths)
    col = np.arange(steps.size) - np.repeat(starts, lengths)
    shift = np.zeros((starts.size, int(lengths.max())))
    shift[row, col] = steps
    low = np.zeros_like(shift)
    high = np.full_like(shift, cap)
    offset = 1
    while offset < shift.shape[1]:
        later = (shift[:, offset:], low[:, offset:], high[:, offset:])
        earlier = (shift[:, :-offset], low[:, :-offset], high[:, :-offset])
        composed = (
            earlier[0] + later[0],
            np.clip(earlier[1] + later[0], later[1], later[2]),
            np.clip(earlier[2] + later[0], later[1], later[2]),
        )
        shift[:, offset:], low[:, offset:], high[:, offset:] = composed
        offset *= 2
    return np.clip(shift, low, high)[row, col]


# ----------------------------------------------------------------------- run lengths


def _normal_cdf(x: np.ndarray, shift: float, clip: float | None) -> np.ndarray:
    """CDF of the CUSUM input: N(shift, 1), winsorized at `clip` when given."""
    cdf = special.ndtr(x - shift)
    if clip is not None:
        cdf = np.where(x >= clip, 1.0, cdf)
    return cdf


def cusum_arl(k: float, h: float, shift: float = 0.0, *, clip: float | None = None,
              point: float | None = None, states: int = 400) -> float:
    """Zero-state ARL of the one-sided CUSUM S_t = max(0, S_(t-1) + x_t - k), signal S > h.

    x_t ~ N(shift, 1), winsorized at `clip` (the robust CUSUM: one outlier alone cannot
    signal); with `point`, a single x_t > point signals as well (the point test run
    alongside). Brook and Evans' Markov chain: [0, h] cut into `states` intervals of
    width w = 2h / (2 states - 1), state 0 being S = 0 (an atom) and state j the interval
    around j * w.
    """
    w = 2 * h / (2 * states - 1)
    centers = np.arange(states) * w
    upper = (np.arange(states) + 0.5) * w  # state j: S in [(j - 1/2) w, (j + 1/2) w)
    # From centre c, S' = max(0, c + x - k) lands below upper[j] when x < upper[j] - c + k.
    edges = upper[None, :] - centers[:, None] + k
    cdf = _normal_cdf(edges, shift, clip)
    if point is not None:
        # x beyond the point limit signals: it never lands in a state.
        cdf = np.minimum(cdf, special.ndtr(point - shift))
    q = np.diff(np.concatenate([np.zeros((states, 1)), cdf], axis=1), axis=1)
    arl = np.linalg.solve(np.eye(states) - q, np.ones(states))
    return float(arl[0])


def cusum_h_for_arl(k: float, arl0: float, *, clip: float | None = None,
                    point: float | None = None) -> float:
    """The decision interval h that gives the in-control ARL `arl0` (bisection)."""
    lo, hi = 0.1, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if cusum_arl(k, mid, clip=clip, point=point) < arl0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# Zone classes of one observation for the Western Electric chain: a side (+1 adverse,
# -1 the other) and a band (0: within 1 sigma, 1: 1-2, 2: 2-3); beyond 3 on a watched
# side signals (WE1). None = no observation yet (the start of the series).
_BANDS = ((0.0, 1.0), (1.0, 2.0), (2.0, 3.0))


@cache
def _zone_chain(two_sided: bool, rules: tuple[int, ...]) -> tuple[list, dict, list]:
    """Reachable canonical histories of the zone chain and their transitions.

    A history keeps what the rules can still use: the last two observations in full
    (WE2 looks at 3), the two before as side and beyond-1 (WE3 looks at 5), the three
    before as side (WE4 looks at 8).
    """
    sides = (1, -1)
    classes = [(s, b) for s in sides for b in range(3)]
    watched = sides if two_sided else (1,)
    if not two_sided:
        classes = [(1, b) for b in range(3)] + [(-1, 0)]  # the good side only breaks runs

    def canon(hist: tuple) -> tuple:
        out = []
        for lag, c in enumerate(hist[:7]):
            if c is None:
                out.append(None)
            elif lag < 2:
                out.append(c)
            elif lag < 4:
                out.append((c[0], min(c[1], 1)))
            else:
                out.append((c[0], 0))
        return tuple(out)

    def signals(x: tuple, hist: tuple) -> bool:
        window = (x, *hist)
        for s in watched:
            if x[0] != s:
                continue
            if 2 in rules and x[1] == 2 and None not in window[:3] and sum(
                    c[0] == s and c[1] == 2 for c in window[:3]) >= 2:
                return True
            if 3 in rules and x[1] >= 1 and None not in window[:5] and sum(
                    c[0] == s and c[1] >= 1 for c in window[:5]) >= 4:
                return True
            if 4 in rules and None not in window[:8] and all(c[0] == s for c in window[:8]):
                return True
        return False

    start = (None,) * 7
    index = {start: 0}
    order = [start]
    moves: list[list[tuple[tuple, int]]] = []
    i = 0
    while i < len(order):
        hist = order[i]
        out = []
        for x in classes:
            if signals(x, hist):
                continue
            nxt = canon((x, *hist))
            if nxt not in index:
                index[nxt] = len(order)
                order.append(nxt)
            out.append((x, index[nxt]))
        moves.append(out)
        i += 1
    return order, index, moves


def zone_rules_arl(shift: float = 0.0, *, rules: tuple[int, ...] = (1, 2, 3, 4),
                   two_sided: bool = True) -> float:
    """Zero-state ARL of Western Electric rules on N(shift, 1) observations (exact chain).

    Rule 1 (one point beyond 3 sigma) is always on; `rules` adds 2, 3 and 4 as DESIGN
    section 5 states them. One-sided: only the positive side is watched (an adverse-side
    alert), the other side only breaks runs.
    """
    order, _, moves = _zone_chain(two_sided, tuple(sorted(set(rules) - {1})))

    def prob(side: int, band: int) -> float:
        lo, hi = _BANDS[band]
        if side > 0:
            return float(special.ndtr(hi - shift) - special.ndtr(lo - shift))
        return float(special.ndtr(-lo - shift) - special.ndtr(-hi - shift))

    p = {(s, b): prob(s, b) for s in (1, -1) for b in range(3)}
    if not two_sided:
        p[(-1, 0)] = float(special.ndtr(-shift))  # every value on the good side
    rows, cols, vals = [], [], []
    for i, out in enumerate(moves):
        for x, j in out:
            rows.append(i)
            cols.append(j)
            vals.append(p[x])
    n = len(order)
    q = sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))
    arl = spsolve((sparse.identity(n, format="csr") - q).tocsc(), np.ones(n))
    return float(arl[0])
