"""Forward + backward time of our multi-head attention vs PyTorch's, on the CPU.

Batch 32, 8 heads, length 128, d_model 512 (the issue's setting). Compares:
ours (`annotated.attention.MultiHeadAttention`), the same projections around
PyTorch's fused `F.scaled_dot_product_attention` (`SDPAMultiHeadAttention`), and
`torch.nn.MultiheadAttention`. Also the attention core alone: our
`scaled_dot_product_attention` vs `F.scaled_dot_product_attention` on
(B, h, T, d_k) tensors. Writes results/01_attention_benchmark.<profile>.json.

    python benchmarks/attention.py [--repeats 20]
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from annotated.attention import (
    MultiHeadAttention,
    SDPAMultiHeadAttention,
    scaled_dot_product_attention,
    time_forward_backward,
)
from annotated.plumbing import get_profile, save_results, seed_everything, timer


def _time_core(fn, Q, K, V, repeats: int, warmup: int = 3) -> float:
    """Median seconds of forward + backward of an attention core on (B, h, T, d_k)."""
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        out = fn(Q, K, V)
        out.sum().backward()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    seed_everything(0)
    B, h, T, d = args.batch, args.heads, args.length, args.d_model
    x = torch.randn(B, T, d, requires_grad=True)
    modules = {
        "ours": MultiHeadAttention(d, h),
        "projections_plus_fused_sdpa": SDPAMultiHeadAttention(d, h),
        "torch_nn_multiheadattention": nn.MultiheadAttention(d, h, batch_first=True),
    }
    with timer() as wall:
        ms = {name: 1e3 * time_forward_backward(m, x, args.repeats, warmup=3) for name, m in modules.items()}
        Q, K, V = (torch.randn(B, h, T, d // h, requires_grad=True) for _ in range(3))
        ms["core_ours"] = 1e3 * _time_core(lambda q, k, v: scaled_dot_product_attention(q, k, v)[0],
                                           Q, K, V, args.repeats)
        ms["core_torch_sdpa"] = 1e3 * _time_core(F.scaled_dot_product_attention, Q, K, V, args.repeats)
    metrics = {
        "ms_fwd_bwd": {k: round(v, 3) for k, v in ms.items()},
        "ratio_ours_vs_projections_plus_fused_sdpa": round(ms["ours"] / ms["projections_plus_fused_sdpa"], 3),
        "ratio_ours_vs_nn_multiheadattention": round(ms["ours"] / ms["torch_nn_multiheadattention"], 3),
        "ratio_core_ours_vs_torch_sdpa": round(ms["core_ours"] / ms["core_torch_sdpa"], 3),
    }
    settings = vars(args) | {"threads": torch.get_num_threads(), "dtype": "float32", "timing": "median"}
    path = save_results("01_attention_benchmark", metrics, settings, wall["seconds"],
                        profile=get_profile())
    for k, v in metrics["ms_fwd_bwd"].items():
        print(f"{k:32s} {v:9.2f} ms")
    for k, v in metrics.items():
        if k.startswith("ratio"):
            print(f"{k:45s} {v:.2f}x")
    print("written:", path)


if __name__ == "__main__":
    main()
