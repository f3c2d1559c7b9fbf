#!/usr/bin/env python3
"""Goldens for tests/prune/prune_golden_test.cpp: SparseGPT, Wanda and magnitude pruning by
independent PyTorch ports of the reference code, on seeded random weights and correlated
calibration inputs:
  * SparseGPT: IST-DASLab/sparsegpt, sparsegpt.py `SparseGPT.fasterprune` (unstructured and N:M);
  * Wanda: locuslab/wanda, lib/prune.py `prune_wanda` with lib/layerwrapper.py `WrappedGPT`
    (the per-linear part: the input norms from add_batch, the metric, the mask);
  * magnitude: locuslab/wanda, lib/prune.py `prune_magnitude`.

Usage: /usr/bin/python3 gen_prune_golden.py --out DIR   (Debian's python3 with python3-torch)

Writes DIR/cases.txt, one line per case:
    name method rows cols sparsity keep_n group_m block_size damp tokens
(keep_n:group_m = 0:0 for unstructured; keep_n kept weights of every group_m, i.e. the
reference's prune_n = group_m - keep_n) and per case raw little-endian row-major float32 files
    name.W.f32 (rows x cols)    the weights
    name.X.f32 (tokens x cols)  the calibration inputs (Wanda, magnitude: unused)
    name.H.f32 (cols x cols)    X^T X as float32 (what the C++ SparseGPT is given)
    name.P.f32 (rows x cols)    the pruned (and, for SparseGPT, updated) weights
    name.M.u8  (rows x cols)    the mask, 1 = pruned

Where these ports depart from the reference, they follow slmc's documented semantics:
  * an exact count is pruned: floor(n * sparsity) of a SparseGPT block's weights, of a tensor's
    (magnitude) -- the references prune every weight <= the k-th smallest score, k + 1 or more;
    Wanda's unstructured rows already prune exactly floor(cols * sparsity);
  * N:M groups and sorts are stable (ties go to the lower column) where the references call
    torch.topk, whose tie order is unspecified;
  * SparseGPT keeps the weights of dead inputs (diag(H) = 0; the reference zeroes W[:, dead]), and
    factors H in float64, rounding the inverse factor to float32 for the sweep (the reference
    works in the dtype of H, float32); slmc forms the same factor another way
    (compress/model/hessian.h), this port keeps the reference's cholesky / cholesky_inverse /
    cholesky(upper) route;
  * SparseGPT's add_batch scales H by 2 / nsamples: every step of fasterprune is invariant to a
    positive scale of H (the dampening is relative to mean diag(H)), so X^T X is used as is.
"""

import argparse
import math
import os
import sys

import torch


def sparsegpt(W, H, sparsity, prunen, prunem, blocksize, percdamp):
    """SparseGPT.fasterprune, line by line where the semantics agree (see the docstring)."""
    W = W.clone().float()
    H = H.double().clone()
    rows, cols = W.shape

    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    # The reference zeroes W[:, dead] here; slmc keeps those weights.

    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(cols)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H.float()

    mask = torch.zeros(rows, cols, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1

        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]

        if prunen == 0:
            tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            k = int(tmp.numel() * sparsity + 1e-9)
            order = torch.sort(tmp.flatten().double(), stable=True)[1][:k]
            mask1 = torch.zeros(tmp.numel(), dtype=torch.bool)
            mask1[order] = True
            mask1 = mask1.reshape(tmp.shape)
        else:
            mask1 = torch.zeros_like(W1) == 1

        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]

            if prunen != 0 and i % prunem == 0:
                tmp = W1[:, i:(i + prunem)] ** 2 / (torch.diag(Hinv1)[i:(i + prunem)].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + torch.sort(tmp, dim=1, stable=True)[1][:, :prunen], True)

            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q

            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1

        W[:, i1:i2] = Q1
        mask[:, i1:i2] = mask1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W, mask


class WrappedGPT:
    """lib/layerwrapper.py: the running mean over calibration samples of ||x_j||^2."""

    def __init__(self, columns):
        self.scaler_row = torch.zeros(columns)
        self.nsamples = 0

    def add_batch(self, inp):
        if len(inp.shape) == 2:
            inp = inp.unsqueeze(0)
        tmp = inp.shape[0]
        if len(inp.shape) == 3:
            inp = inp.reshape((-1, inp.shape[-1]))
        inp = inp.t()
        self.scaler_row *= self.nsamples / (self.nsamples + tmp)
        self.nsamples += tmp
        inp = inp.type(torch.float32)
        self.scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / self.nsamples


def nm_mask(metric, prune_n, prune_m):
    W_mask = torch.zeros_like(metric) == 1
    for ii in range(metric.shape[1]):
        if ii % prune_m == 0:
            tmp = metric[:, ii:(ii + prune_m)].float()
            W_mask.scatter_(1, ii + torch.sort(tmp, dim=1, stable=True)[1][:, :prune_n], True)
    return W_mask


def wanda(W, X, seqlen, sparsity_ratio, prune_n, prune_m):
    """prune_wanda for one linear: one add_batch per calibration sample of `seqlen` tokens."""
    wrapped = WrappedGPT(W.shape[1])
    for j in range(0, X.shape[0], seqlen):
        wrapped.add_batch(X[j:j + seqlen].unsqueeze(0))
    W_metric = torch.abs(W) * torch.sqrt(wrapped.scaler_row.reshape((1, -1)))
    if prune_n != 0:
        W_mask = nm_mask(W_metric, prune_n, prune_m)
    else:
        W_mask = torch.zeros_like(W_metric) == 1
        sort_res = torch.sort(W_metric, dim=-1, stable=True)
        indices = sort_res[1][:, :int(W_metric.shape[1] * sparsity_ratio)]
        W_mask.scatter_(1, indices, True)
    P = W.clone()
    P[W_mask] = 0
    return P, W_mask


def magnitude(W, sparsity_ratio, prune_n, prune_m):
    """prune_magnitude for one linear (exact count, see the docstring)."""
    W_metric = torch.abs(W)
    if prune_n != 0:
        W_mask = nm_mask(W_metric, prune_n, prune_m)
    else:
        k = int(W.numel() * sparsity_ratio + 1e-9)
        order = torch.sort(W_metric.flatten(), stable=True)[1][:k]
        W_mask = torch.zeros(W.numel(), dtype=torch.bool)
        W_mask[order] = True
        W_mask = W_mask.reshape(W.shape)
    P = W.clone()
    P[W_mask] = 0
    return P, W_mask


def make_inputs(seed, rows, cols, tokens, dead):
    """Weights with a few outliers; inputs with shared low-rank factors, mixed channels and
    log-normal channel scales (correlated, diag(H) over decades, as in real layers)."""
    g = torch.Generator().manual_seed(seed)
    W = 0.02 * torch.randn(rows, cols, generator=g)
    outliers = torch.rand(rows, cols, generator=g) < 0.01
    W = torch.where(outliers, 5 * W, W)
    Z = torch.randn(tokens, cols, generator=g, dtype=torch.float64)
    mix = torch.eye(cols, dtype=torch.float64) + \
        0.6 * torch.randn(cols, cols, generator=g, dtype=torch.float64) / math.sqrt(cols)
    low = torch.randn(tokens, 8, generator=g, dtype=torch.float64) @ \
        torch.randn(8, cols, generator=g, dtype=torch.float64)
    scale = torch.exp(0.8 * torch.randn(cols, generator=g, dtype=torch.float64))
    X = ((Z @ mix + low) * scale).float()
    if dead:
        X[:, list(dead)] = 0
    H = (X.double().t() @ X.double()).float()
    return W, X, H


def output_error(W, P, H):
    w, e, h = W.double(), (W.double() - P.double()), H.double()
    return ((e @ h) * e).sum().item() / ((w @ h) * w).sum().item()


# name, method, rows, cols, sparsity, keep_n, group_m, block_size, dead input columns.
CASES = [
    ("sgpt_50", "sparsegpt", 64, 256, 0.5, 0, 0, 128, ()),
    # 192 columns in blocks of 128: a partial last block; 60% of each block.
    ("sgpt_60_b128_partial", "sparsegpt", 48, 192, 0.6, 0, 0, 128, ()),
    ("sgpt_2of4", "sparsegpt", 64, 256, 0.5, 2, 4, 128, ()),
    ("sgpt_4of8", "sparsegpt", 40, 256, 0.5, 4, 8, 64, ()),
    ("sgpt_dead", "sparsegpt", 32, 128, 0.5, 0, 0, 64, (3, 70)),
    ("wanda_50", "wanda", 64, 256, 0.5, 0, 0, 0, ()),
    ("wanda_2of4", "wanda", 64, 256, 0.5, 2, 4, 0, ()),
    ("wanda_4of8", "wanda", 33, 128, 0.5, 4, 8, 0, ()),
    ("magnitude_30", "magnitude", 64, 256, 0.3, 0, 0, 0, ()),
]
DAMP = 0.01
SEQLEN = 64  # tokens per calibration sample (Wanda's add_batch calls)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    lines = []
    for seed, (name, method, rows, cols, sparsity, keep_n, group_m, bsz, dead) in enumerate(CASES):
        tokens = 4 * SEQLEN
        W, X, H = make_inputs(2000 + seed, rows, cols, tokens, dead)
        prune_n = group_m - keep_n if group_m else 0
        if method == "sparsegpt":
            P, M = sparsegpt(W, H, sparsity, prune_n, group_m, bsz, DAMP)
        elif method == "wanda":
            P, M = wanda(W, X, SEQLEN, sparsity, prune_n, group_m)
        else:
            P, M = magnitude(W, sparsity, prune_n, group_m)
        if not torch.equal(P[M], torch.zeros(int(M.sum()))):
            sys.exit(f"{name}: pruned weights are not zero")
        want = int(rows * cols * sparsity + 1e-9)
        if group_m == 0 and method != "wanda" and bsz == 0 and int(M.sum()) != want:
            sys.exit(f"{name}: {int(M.sum())} pruned, expected {want}")
        if group_m:
            groups = M.reshape(rows, cols // group_m, group_m).sum(-1)
            if not torch.equal(groups, torch.full_like(groups, prune_n)):
                sys.exit(f"{name}: a group does not prune exactly {prune_n} of {group_m}")
        err = output_error(W, P, H)
        if method == "sparsegpt":
            # OBS updates must beat pruning the same weights without them.
            err_plain = output_error(W, W.masked_fill(M, 0), H)
            if not err < err_plain:
                sys.exit(f"{name}: SparseGPT output error {err} is not below {err_plain}")
        for suffix, t in (("W", W), ("X", X), ("H", H), ("P", P)):
            t.contiguous().numpy().astype("<f4").tofile(os.path.join(args.out, f"{name}.{suffix}.f32"))
        M.to(torch.uint8).contiguous().numpy().tofile(os.path.join(args.out, f"{name}.M.u8"))
        lines.append(f"{name} {method} {rows} {cols} {sparsity!r} {keep_n} {group_m} {bsz} "
                     f"{DAMP!r} {tokens}")
        print(f"{name}: {int(M.sum())} of {rows * cols} pruned, relative output error {err:.6g}")
    with open(os.path.join(args.out, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
