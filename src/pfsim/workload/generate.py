"""Access streams generated in compiled code: a small counter-free generator per stream and
O(1)-memory samplers, so a Zipf range of terabytes costs nothing before it is touched.

Random numbers come from SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom
number generators", OOPSLA 2014), seeded from the step's own named numpy stream: no global
random state.  A double is the top 53 bits of a draw; a page below ``n`` is ``floor(u * n)``.

Zipf ranks use rejection-inversion (Hörmann and Derflinger, "Rejection-inversion to generate
variates from monotone discrete distributions", ACM TOMACS 6(3), 1996), in the form of Apache
Commons RNG's ``RejectionInversionZipfSampler``: O(1) memory and expected time per draw for
any exponent > 0 over ranks 1..n.  Ranks are scattered over the range by a keyed bijection of
[0, n) (a 4-round Feistel network over the smallest even power of two >= n, cycle-walking
back into range), instead of a stored random permutation (8 bytes a page).

The functions are plain numba; ``fn.py_func`` is the same code run by the interpreter, which
the tests use as the reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SEQUENTIAL, UNIFORM, ZIPF, HOTCOLD, TRACE = range(5)
PATTERNS = {"sequential": SEQUENTIAL, "uniform": UNIFORM, "zipf": ZIPF, "hotcold": HOTCOLD,
            "trace": TRACE}

# state: int64 words of a stream
S_RNG, S_GENERATED, S_HALF_BITS, S_KEY0 = 0, 1, 2, 3
FEISTEL_ROUNDS = 4
STATE_WORDS = S_KEY0 + FEISTEL_ROUNDS

# float parameters of a stream
P_WRITE_RATIO, P_ALPHA, P_HOT_PROBABILITY = range(3)
P_H_X1, P_H_N, P_S = 3, 4, 5
PARAMS = 6
# integer parameters of a stream
I_PATTERN, I_NPAGES, I_STRIDE, I_LENGTH, I_OFFSET, I_HOT_PAGES, I_PHASE = range(7)
IPARAMS = 7

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_DOUBLE = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, nogil=True)
def _mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _next(state: np.ndarray) -> np.uint64:
    """One SplitMix64 draw; the state is the int64 word ``state[S_RNG]``."""
    s = np.uint64(state[S_RNG]) + _GOLDEN
    state[S_RNG] = np.int64(s)
    return _mix(s)


@njit(cache=True, nogil=True)
def _uniform(state: np.ndarray) -> float:
    """A double in [0, 1)."""
    return float(_next(state) >> np.uint64(11)) * _DOUBLE


@njit(cache=True, nogil=True)
def _below(state: np.ndarray, n: int) -> int:
    """An integer in [0, n)."""
    k = int(_uniform(state) * n)
    return k if k < n else n - 1


# ------------------------------------------------------------------ Zipf by rejection-inversion

@njit(cache=True, nogil=True)
def _helper1(x: float) -> float:
    """log1p(x) / x, 1 at x = 0."""
    return np.log1p(x) / x if abs(x) > 1e-8 else 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))


@njit(cache=True, nogil=True)
def _helper2(x: float) -> float:
    """expm1(x) / x, 1 at x = 0."""
    return np.expm1(x) / x if abs(x) > 1e-8 else 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))


@njit(cache=True, nogil=True)
def zipf_h(x: float, alpha: float) -> float:
    """h(x) = x**-alpha, the unnormalized density."""
    return np.exp(-alpha * np.log(x))


@njit(cache=True, nogil=True)
def zipf_h_integral(x: float, alpha: float) -> float:
    """H(x), an antiderivative of h: (x**(1 - alpha) - 1) / (1 - alpha), or log(x) at 1."""
    log_x = np.log(x)
    return _helper2((1.0 - alpha) * log_x) * log_x


@njit(cache=True, nogil=True)
def zipf_h_integral_inverse(x: float, alpha: float) -> float:
    """The inverse of :func:`zipf_h_integral`."""
    t = x * (1.0 - alpha)
    if t < -1.0:
        t = -1.0  # limits the value to the domain (rounding near the lower end)
    return np.exp(_helper1(t) * x)


def zipf_constants(npages: int, alpha: float) -> tuple[float, float, float]:
    """(H(1.5) - 1, H(n + 0.5), s) of the sampler, computed once per stream."""
    h_x1 = float(zipf_h_integral(1.5, alpha)) - 1.0
    h_n = float(zipf_h_integral(npages + 0.5, alpha))
    s = 2.0 - float(zipf_h_integral_inverse(float(zipf_h_integral(2.5, alpha))
                                            - float(zipf_h(2.0, alpha)), alpha))
    return h_x1, h_n, s


@njit(cache=True, nogil=True)
def zipf_rank(state: np.ndarray, n: int, alpha: float, h_x1: float, h_n: float, s: float) -> int:
    """A rank in 1..n with probability proportional to rank**-alpha."""
    while True:
        u = h_n + _uniform(state) * (h_x1 - h_n)
        x = zipf_h_integral_inverse(u, alpha)
        k = int(x + 0.5)
        if k < 1:
            k = 1
        elif k > n:
            k = n
        if k - x <= s or u >= zipf_h_integral(k + 0.5, alpha) - zipf_h(float(k), alpha):
            return k


# ------------------------------------------------------------------ a keyed bijection of [0, n)

@njit(cache=True, nogil=True)
def scatter(rank: int, n: int, state: np.ndarray) -> int:
    """Page of ``rank`` (0-based): a Feistel permutation of [0, 4**h) (``h = state[S_HALF_BITS]``
    bits a half), applied again until the result falls below ``n`` (cycle-walking keeps it a
    bijection of [0, n))."""
    half = state[S_HALF_BITS]
    mask = (np.int64(1) << half) - 1
    x = rank
    while True:
        left = x >> half
        right = x & mask
        for r in range(FEISTEL_ROUNDS):
            f = np.int64(_mix(np.uint64(right) ^ np.uint64(state[S_KEY0 + r])) >> np.uint64(1))
            left, right = right, (left ^ f) & mask
        x = (left << half) | right
        if x < n:
            return x


# ------------------------------------------------------------------ chunks

@njit(cache=True, nogil=True)
def fill(state: np.ndarray, iparams: np.ndarray, params: np.ndarray, pages: np.ndarray,
         stores: np.ndarray) -> None:
    """The next ``len(pages)`` accesses of a stream: page offsets and store flags (a trace's
    pages are already in ``pages``: only its store flags are drawn)."""
    pattern = iparams[I_PATTERN]
    npages = iparams[I_NPAGES]
    write_ratio = params[P_WRITE_RATIO]
    k0 = state[S_GENERATED]
    for i in range(len(pages)):
        if pattern == SEQUENTIAL:
            position = ((k0 + i) * iparams[I_STRIDE]) % iparams[I_LENGTH]
            pages[i] = (position + iparams[I_OFFSET]) >> 12
        elif pattern == UNIFORM:
            pages[i] = _below(state, npages)
        elif pattern == ZIPF:
            rank = zipf_rank(state, npages, params[P_ALPHA], params[P_H_X1], params[P_H_N],
                             params[P_S])
            pages[i] = scatter(rank - 1, npages, state)
        elif pattern == TRACE:
            pass
        else:  # HOTCOLD: the hot set moves to the next block every ``phase`` accesses
            hot_pages = iparams[I_HOT_PAGES]
            if _uniform(state) < params[P_HOT_PROBABILITY]:
                hot_start = (((k0 + i) // iparams[I_PHASE]) * hot_pages) % npages
                pages[i] = (hot_start + _below(state, hot_pages)) % npages
            else:
                pages[i] = _below(state, npages)
        if write_ratio <= 0.0:
            stores[i] = False
        elif write_ratio >= 1.0:
            stores[i] = True
        else:
            stores[i] = _uniform(state) < write_ratio
    state[S_GENERATED] = k0 + len(pages)
