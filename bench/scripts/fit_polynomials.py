"""Fits the polynomials of csrc/cpu/simd/math.h and reports the float32 error
of the whole function as the kernels evaluate it (emulated in NumPy).

    python bench/scripts/fit_polynomials.py

exp:   e^r ~ 1 + sum_{k=1..d} c_k r^k on [-ln2/2, ln2/2], d = 5 and 6
expm1: expm1(r) ~ r + r^2 sum_{k=0..4} c_k r^k on the same interval (tanh)
Each minimizes the relative error by Lawson's iteration (iteratively
reweighted least squares converging to the minimax fit).
"""

import numpy as np

f32 = np.float32
HALF_LN2 = np.log(2) / 2
MAGIC = f32(12582912.0 + 127.0)


def fma(a, b, c):
    return f32(np.float64(a) * np.float64(b) + np.float64(c))


def lawson(basis, target, iterations=300):
    """Coefficients c minimizing max |basis @ c - target| (rows pre-scaled to
    relative error)."""
    w = np.ones(len(target))
    for _ in range(iterations):
        sw = np.sqrt(w)
        c, *_ = np.linalg.lstsq(basis * sw[:, None], target * sw, rcond=None)
        err = np.abs(basis @ c - target)
        w *= 0.5 * err / err.max() + 0.5 * (err > 0)
        w /= w.sum()
    return [float(f32(v)) for v in c], err.max()


def reduce(z):
    biased = fma(z, f32(1.44269504088896341), MAGIC)
    n = f32(biased - MAGIC)
    r = fma(-n, f32(0.693359375), z)
    return fma(-n, f32(-2.12194440e-4), r), np.ldexp(np.float64(1.0), n.astype(np.int64))


def horner(c, r):
    p = f32(c[-1])
    for ck in c[-2::-1]:
        p = fma(p, r, f32(ck))
    return p


def ulps(got, exact):
    return np.abs(got - exact) / np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)


r = np.linspace(-HALF_LN2 * 1.0005, HALF_LN2 * 1.0005, 200001)
z = np.concatenate([-np.linspace(0, 87.3, 4000001), -np.logspace(-8, 1.9, 200001)]).astype(np.float32)
for degree in (5, 6):
    c, rel = lawson(np.stack([r**k for k in range(1, degree + 1)], 1) / np.exp(r)[:, None], 1 - np.exp(-r))
    rr, scale = reduce(np.maximum(z, f32(-88.0)))
    got = f32(np.float64(fma(horner(c, rr), rr, f32(1.0))) * scale)
    u = ulps(got, np.exp(z.astype(np.float64)))
    print(f"exp degree {degree}: relative {rel:.2e}, {u.max():.2f} ulp worst, {u.mean():.3f} mean")
    print("  c1..c%d =" % degree, ", ".join(f"{v:.10e}" for v in c))

r = np.concatenate([np.linspace(-HALF_LN2 * 1.001, -1e-7, 100001), np.linspace(1e-7, HALF_LN2 * 1.001, 100001)])
c, rel = lawson(np.stack([r ** (k + 2) for k in range(5)], 1) / np.expm1(r)[:, None], 1 - r / np.expm1(r))
x = np.concatenate([np.linspace(0, 1, 2000001), np.linspace(0, 20, 4000001), np.logspace(-30, 2, 300001)])
x = x.astype(np.float32)
rr, scale = reduce(np.maximum(f32(x * f32(-2.0)), f32(-88.0)))
s = f32(scale)
m = fma(s, fma(f32(rr * rr), horner(c, rr), rr), f32(s - f32(1.0)))
got = f32(-m / f32(m + f32(2.0)))
exact = np.tanh(x.astype(np.float64))
normal = exact >= np.finfo(np.float32).tiny
u = ulps(got, exact)[normal]
print(f"tanh via expm1, Q degree 4: relative {rel:.2e}, {u.max():.2f} ulp worst, {u.mean():.3f} mean")
print("  c0..c4 =", ", ".join(f"{v:.10e}" for v in c))
