"""Reference for difusa's "cuda" generator, in numpy, independent of the C code.

torch's CUDA randn as AUTOMATIC1111's webui reproduces it on the CPU
(modules/rng_philox.py, its "NV" seed source) and stable-diffusion.cpp ports:

  * Philox4x32-10 with key (seed & 0xffffffff, seed >> 32) and, for element i
    of a call, counter (offset, 0, i, 0); the generator's offset grows by 1 per
    randn call. Each element keeps only the first two of the four output words.
  * Box-Muller on those two words with curand's constants, stored as float32.
    numpy promotes a uint32 array times a float32 array to float64, so
        u = x * 2^-32 + 2^-33,   v = y * (2^-32 * 2pi) + (2^-32 * 2pi) / 2
    are computed in double (product rounded, then the sum: never fused), then
    sqrt(-2 log u) * sin v in double, and the result is rounded to float32.
"""

import numpy as np

PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
MASK32 = 0xFFFFFFFF

# rng_philox.py's constants: float32 values of these double literals.
SCALE_U = np.float32(2.3283064e-10)
SCALE_V = np.float32(2.3283064e-10 * 6.2831855)


def philox4x32_10(ctr, key):
    """ctr: four uint32 arrays (or ints), key: two ints -> four uint32 arrays."""
    c = [np.asarray(w, dtype=np.uint64) & np.uint64(MASK32) for w in ctr]
    k0, k1 = int(key[0]) & MASK32, int(key[1]) & MASK32
    m0, m1 = np.uint64(PHILOX_M[0]), np.uint64(PHILOX_M[1])
    for rnd in range(10):
        if rnd:
            k0 = (k0 + PHILOX_W[0]) & MASK32
            k1 = (k1 + PHILOX_W[1]) & MASK32
        prod0 = c[0] * m0  # < 2^64: exact in uint64
        prod1 = c[2] * m1
        c = [
            (prod1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0),
            prod1 & np.uint64(MASK32),
            (prod0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1),
            prod0 & np.uint64(MASK32),
        ]
    return [w.astype(np.uint32) for w in c]


def box_muller(x, y):
    """First Box-Muller output for uint32 words x, y, with rng_philox.py's precision."""
    su, sv = np.float64(SCALE_U), np.float64(SCALE_V)
    u = x.astype(np.float64) * su
    u = u + np.float64(SCALE_U / np.float32(2))
    v = y.astype(np.float64) * sv
    v = v + np.float64(SCALE_V / np.float32(2))
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)


class PhiloxGenerator:
    def __init__(self, seed):
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = 0

    def randn(self, n):
        i = np.arange(n, dtype=np.uint64)
        ctr = (
            np.full(n, self.offset & MASK32, dtype=np.uint64),
            np.full(n, self.offset >> 32, dtype=np.uint64),
            i & np.uint64(MASK32),
            i >> np.uint64(32),
        )
        self.offset += 1
        g = philox4x32_10(ctr, (self.seed & MASK32, self.seed >> 32))
        return box_muller(g[0], g[1])


def self_check():
    """Known answers, so a broken reference cannot write fixtures."""
    # Random123's known-answer vectors for Philox4x32-10.
    kat = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((MASK32,) * 4, (MASK32, MASK32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ]
    for ctr, key, want in kat:
        got = tuple(int(w) for w in philox4x32_10(ctr, key))
        assert got == want, f"philox KAT {ctr} {key}: {got} != {want}"
    # The promotion rng_philox.py relies on (numpy 1.x rules and NEP 50 alike).
    a = np.zeros(2, np.uint32) * np.array([SCALE_U], dtype=np.float32)
    assert a.dtype == np.float64, a.dtype
    # rng_philox.py's docstring: Generator(seed=0).randn((3, 4)), which is also
    # what torch.manual_seed(0); torch.randn(3, 4, device="cuda") prints. Those
    # digits are a few float32 ulps off the float32 values the code returns
    # (printed from another build), so this is a coarse check.
    want = [-0.92466259, -0.42534415, -2.6438457, 0.14518388, -0.12086647, -0.57972564,
            -0.62285122, -0.32838709, -1.07454231, -0.36314407, -1.67105067, 2.26550497]
    got = PhiloxGenerator(0).randn(12)
    assert np.allclose(got, want, rtol=0, atol=5e-7), got


if __name__ == "__main__":
    self_check()
    print(PhiloxGenerator(0).randn(12).reshape(3, 4))
