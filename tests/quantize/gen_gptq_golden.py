#!/usr/bin/env python3
"""Goldens for tests/quantize/gptq_test.cpp: GPTQ by an independent PyTorch port of the reference
(IST-DASLab/gptq, gptq.py `fasterquant`) with the codec's grids (quantize/codec/formats.cpp
choose_grid and Grid::code), on seeded random weights and correlated calibration inputs.

Usage: /usr/bin/python3 gen_gptq_golden.py --out DIR   (Debian's python3 with python3-torch)

Writes DIR/cases.txt, one line per case:
    name format rows cols act_order static_groups block_size damp rel_output_error
and per case the raw little-endian, row-major float32 files
    name.W.f32 (rows x cols)   the weights
    name.H.f32 (cols x cols)   sum over tokens of x x^T (what the C++ side is given)
    name.Q.f32 (rows x cols)   the GPTQ dequantized weights
rel_output_error is tr((W - Q) H (W - Q)^T) / tr(W H W^T) in float64 with that H.

Where this port departs from the reference, it follows slmc's documented semantics:
  * dead inputs (diag(H) == 0) keep their weights (the reference zeroes W[:, dead]);
  * the inverse-Hessian factor is computed in float64 (the reference: float32) and rounded to
    float32 for the sweep; slmc factors H in float64 too but forms the same factor another way
    (an fp32 inverse of the reversed-order Cholesky factor), while this port keeps the
    reference's route (cholesky, cholesky_inverse, cholesky upper), so the two stay independent;
  * act_order sorts stably, so equal diag(H) entries keep their order;
  * without static groups a group's grid sees the weights updated by every column quantized so
    far. The reference reads its outer W, which lacks the current lazy batch's updates; run with
    blocksize=1 it has no pending updates, so those cases use blocksize=1 (lazy batching changes
    only the float summation order, which check_lazy_batching() verifies on the static cases).
"""

import argparse
import math
import os
import sys

import torch

GROUP = {"q8_0": 32, "q4_0": 32, "q4_g64": 64, "q4_g128": 128}


def f16(t):
    return t.half().float()


def div(a, b):
    # IEEE division by a full tensor: torch may turn a division by a scalar into a multiplication
    # by its reciprocal, which rounds differently from the C++ `x / d`.
    return a / torch.as_tensor(b, dtype=a.dtype).expand_as(a).contiguous()


def roundf(v):
    # C roundf (halves away from zero); v - trunc(v) is exact, so the tie test is exact.
    t = v.trunc()
    return torch.where((v - t).abs() >= 0.5, t + v.sign(), t)


class Grid:
    """One block's grid for every row: x ~= d * (q - z), q in [qmin, qmax] (codec::Grid)."""

    def __init__(self, d, z, qmin, qmax):
        self.d, self.z, self.qmin, self.qmax = d, z, qmin, qmax

    def quantize(self, x):
        # Grid::code: nearbyint(x / d + z) clamped (torch.round rounds halves to even, like
        # nearbyint); a zero scale gives the code nearest z. Then Grid::value: d * (q - z).
        nz = self.d != 0
        safe_d = torch.where(nz, self.d, torch.ones_like(self.d))
        q = torch.where(nz, torch.round(div(x, safe_d) + self.z), roundf(self.z))
        q = q.clamp(self.qmin, self.qmax)
        return self.d * (q - self.z)


def find_params(fmt, w):
    """codec::choose_grid with scale 1 for each row of w (rows, group)."""
    rows = w.shape[0]
    if fmt == "q8_0":
        amax = w.abs().amax(1)
        return Grid(f16(div(amax, 127.0)), torch.zeros(rows), -127, 127)
    if fmt == "q4_0":
        # The value of largest magnitude, sign kept, first one on ties (argmax keeps the first).
        mx = w.gather(1, w.abs().argmax(1, keepdim=True)).squeeze(1)
        return Grid(f16(div(mx, -8.0)), torch.full((rows,), 8.0), 0, 15)
    lo = w.amin(1).clamp(max=0.0)  # zero stays representable
    hi = w.amax(1).clamp(min=0.0)
    d = f16(div(hi - lo, 15.0))
    nz = d != 0
    z = torch.where(nz, roundf(div(-lo, torch.where(nz, d, torch.ones_like(d)))).clamp(0, 15),
                    torch.zeros_like(d))
    return Grid(d, z, 0, 15)


def gptq(W, H, fmt, act_order, static_groups, blocksize, percdamp):
    """fasterquant, line by line where the semantics agree (see the module docstring)."""
    W = W.clone().float()
    H = H.double().clone()
    rows, cols = W.shape
    gs = GROUP[fmt]

    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    # The reference zeroes W[:, dead] here; slmc keeps those weights.

    if static_groups:
        groups = [find_params(fmt, W[:, i:i + gs]) for i in range(0, cols, gs)]

    if act_order:
        perm = torch.sort(torch.diag(H), descending=True, stable=True).indices
        W = W[:, perm]
        H = H[perm][:, perm]
        invperm = torch.argsort(perm)

    Q = torch.zeros_like(W)

    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(cols)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H.float()

    grid = None
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1

        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]

        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]

            if not static_groups:
                if (i1 + i) % gs == 0:
                    grid = find_params(fmt, W[:, (i1 + i):(i1 + i + gs)])
            else:
                idx = i1 + i
                if act_order:
                    idx = perm[idx].item()
                grid = groups[idx // gs]

            q = grid.quantize(w)
            Q1[:, i] = q

            err1 = div(w - q, d)
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1

        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])

    if act_order:
        Q = Q[:, invperm]
    return Q


def rtn(W, fmt):
    """Round to nearest on choose_grid's grids (what rtn_quantize stores for the q4_g formats)."""
    gs = GROUP[fmt]
    blocks = [W[:, i:i + gs] for i in range(0, W.shape[1], gs)]
    return torch.cat([find_params(fmt, b).quantize(b.t()).t() for b in blocks], dim=1)


def rel_output_error(W, Q, H):
    w, e, h = W.double(), (W.double() - Q.double()), H.double()
    den = ((w @ h) * w).sum().item()
    return ((e @ h) * e).sum().item() / den if den > 0 else 0.0


def make_inputs(seed, rows, cols, dead):
    """Weights with a few outliers; inputs with shared low-rank factors, mixed channels and
    log-normal channel scales, so H is correlated and diag(H) spans decades (as in real layers,
    which is what makes act_order and error propagation matter)."""
    g = torch.Generator().manual_seed(seed)
    W = 0.02 * torch.randn(rows, cols, generator=g)
    outliers = torch.rand(rows, cols, generator=g) < 0.01
    W = torch.where(outliers, 5 * W, W)
    n = 2 * cols
    Z = torch.randn(n, cols, generator=g, dtype=torch.float64)
    mix = torch.eye(cols, dtype=torch.float64) + \
        0.6 * torch.randn(cols, cols, generator=g, dtype=torch.float64) / math.sqrt(cols)
    low = torch.randn(n, 8, generator=g, dtype=torch.float64) @ \
        torch.randn(8, cols, generator=g, dtype=torch.float64)
    scale = torch.exp(0.8 * torch.randn(cols, generator=g, dtype=torch.float64))
    X = (Z @ mix + low) * scale
    if dead:
        X[:, list(dead)] = 0
    H = (X.t() @ X).float()  # what the C++ side reads; the golden uses exactly this H
    return W, H


# name, format, rows, cols, act_order, static_groups, block_size, dead input columns.
# A rounding-boundary flip (float order differs between the two implementations) changes the rest
# of its row; non-static grids add flips of their fp16 scale, so those cases have 256 rows, where
# one flipped row stays under the C++ test's 0.5% tolerance.
CASES = [
    ("q4_0_act", "q4_0", 64, 256, True, True, 128, ()),
    # q4_0 groups of 32 start inside lazy blocks of 128: the grid must see the in-block updates.
    ("q4_0_seq", "q4_0", 256, 256, False, False, 128, ()),
    # Groups straddle lazy blocks of 48: the pending block update must reach the grid too.
    ("q4_0_seq_b48", "q4_0", 256, 256, False, False, 48, ()),
    ("q4_0_static_noact", "q4_0", 32, 256, False, True, 128, ()),
    ("q8_0_act", "q8_0", 48, 256, True, True, 128, ()),
    ("q4_g128_act", "q4_g128", 32, 512, True, True, 128, ()),
    ("q4_g64_seq", "q4_g64", 256, 256, False, False, 128, ()),
    # 37 rows, and lazy blocks of 96 over 256 columns leave a partial last block.
    ("q4_g64_rows37", "q4_g64", 37, 256, True, True, 96, ()),
    ("q4_0_dead", "q4_0", 40, 256, True, True, 128, (5, 77, 200)),
]
DAMP = 0.01


def check_lazy_batching(W, H, fmt, act_order, blocksize, Q):
    """The lazy batch update only reorders float sums: blocksize 1 must give the same codes up
    to rounding-boundary flips."""
    Q1 = gptq(W, H, fmt, act_order, True, 1, DAMP)
    same = (Q1 == Q).float().mean().item()
    if same < 0.995:
        sys.exit(f"lazy batching changed {100 * (1 - same):.2f}% of the values")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    lines = []
    for seed, (name, fmt, rows, cols, act, static, bsz, dead) in enumerate(CASES):
        W, H = make_inputs(1000 + seed, rows, cols, dead)
        Q = gptq(W, H, fmt, act, static, bsz if static else 1, DAMP)
        err = rel_output_error(W, Q, H)
        err_rtn = rel_output_error(W, rtn(W, fmt), H)
        # A port that does not beat round to nearest on correlated inputs is broken.
        if not err < err_rtn:
            sys.exit(f"{name}: GPTQ rel_output_error {err} is not below RTN's {err_rtn}")
        if static and bsz > 1:
            check_lazy_batching(W, H, fmt, act, bsz, Q)
        if dead:
            # Dead inputs neither receive nor spread error: their weights round on their grid.
            cols_dead = list(dead)
            want = rtn(W, fmt)[:, cols_dead]
            if not torch.equal(Q[:, cols_dead], want):
                sys.exit(f"{name}: dead columns are not rounded to nearest on their grid")
        for suffix, t in (("W", W), ("H", H), ("Q", Q)):
            t.contiguous().numpy().astype("<f4").tofile(os.path.join(args.out, f"{name}.{suffix}.f32"))
        lines.append(f"{name} {fmt} {rows} {cols} {int(act)} {int(static)} {bsz} {DAMP!r} {err!r}")
        print(f"{name}: rel_output_error {err:.6g} (RTN {err_rtn:.6g})")
    with open(os.path.join(args.out, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
