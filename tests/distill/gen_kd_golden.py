#!/usr/bin/env python3
"""Reference distillation losses for tests/distill/losses_test.cpp, with Debian's python3-torch.

Usage: gen_kd_golden.py IN OUT [IN OUT ...]. Reads each IN (raw little-endian): int64 N, V, k; float64 T; float32 student[N*V], teacher[N*V];
int64 indices[N*k] (the teacher's kept ids per row). Writes OUT: float64 values
  fkl, rkl, fkl_topk, rkl_topk, then the gradients d/d(student) of each, N*V each.

Independent of slmc's code on purpose:
  - full-vocabulary KL through torch.nn.functional.kl_div (log_target) in float64;
  - the truncated ("top-k plus rest bucket") KL from the FULL teacher softmax in float64: the
    kept ids' probabilities and 1 minus their sum, never from stored top-k values or a stored
    rest log-sum-exp; the student's rest bucket likewise as 1 minus its kept mass.
"""
import struct
import sys

import torch
import torch.nn.functional as F


def one(src, dst):
    raw = open(src, "rb").read()
    n, v, k = struct.unpack_from("<qqq", raw, 0)
    (T,) = struct.unpack_from("<d", raw, 24)
    off = 32
    s = torch.frombuffer(bytearray(raw[off:off + 4 * n * v]), dtype=torch.float32).view(n, v)
    off += 4 * n * v
    t = torch.frombuffer(bytearray(raw[off:off + 4 * n * v]), dtype=torch.float32).view(n, v)
    off += 4 * n * v
    idx = torch.frombuffer(bytearray(raw[off:off + 8 * n * k]), dtype=torch.int64).view(n, k)

    s64 = s.double()
    t64 = t.double()
    outs = []
    grads = []

    def run(fn):
        x = s64.clone().requires_grad_(True)
        loss = fn(x)
        loss.backward()
        outs.append(loss.item())
        grads.append(x.grad.reshape(-1))

    lt_full = F.log_softmax(t64 / T, dim=1)
    # KL(teacher || student): kl_div(input=log q, target=log p).
    run(lambda x: F.kl_div(F.log_softmax(x / T, 1), lt_full, reduction="batchmean",
                           log_target=True) * T * T)
    run(lambda x: F.kl_div(lt_full, F.log_softmax(x / T, 1), reduction="batchmean",
                           log_target=True) * T * T)

    p_full = torch.softmax(t64 / T, dim=1)
    p_kept = p_full.gather(1, idx)
    p_rest = (1.0 - p_kept.sum(1)).clamp_min(0.0)

    def buckets(x):
        q_full = torch.softmax(x / T, dim=1)
        q_kept = q_full.gather(1, idx)
        q_rest = 1.0 - q_kept.sum(1)
        return q_kept, q_rest

    def fkl_topk(x):
        q_kept, q_rest = buckets(x)
        kept = (p_kept * (p_kept.log() - q_kept.log())).sum(1)
        if k < v:
            rest = torch.where(p_rest > 0, p_rest * (p_rest.log() - q_rest.log()),
                               torch.zeros_like(p_rest))
            kept = kept + rest
        return kept.mean() * T * T

    def rkl_topk(x):
        q_kept, q_rest = buckets(x)
        kept = (q_kept * (q_kept.log() - p_kept.log())).sum(1)
        if k < v:
            kept = kept + q_rest * (q_rest.log() - p_rest.log())
        return kept.mean() * T * T

    run(fkl_topk)
    run(rkl_topk)
    with open(dst, "wb") as f:
        f.write(struct.pack("<%dd" % len(outs), *outs))
        for g in grads:
            f.write(g.numpy().astype("<f8").tobytes())


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit("usage: gen_kd_golden.py IN OUT [IN OUT ...]")
    for i in range(0, len(args), 2):
        one(args[i], args[i + 1])
