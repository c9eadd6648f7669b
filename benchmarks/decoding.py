"""Decoding time of the Transformer with and without the key/value cache, on the CPU.

The full profile's model size (d_model 256, 8 heads, 3+3 layers, d_ff 1024), random
weights, batch 32, a 14-word source, vocabularies of 8,000 and 6,000 words. Measures
(1) one decoding step after a prefix of t words, cached vs recomputed, and (2) a whole
greedy output of L words (no <eos> is ever written, so every output has L words),
cached vs recomputed. The variants alternate run by run so that both see the same
machine load; each ratio is the median over the runs, with its min and max. Writes
results/05_transformer_decoding_benchmark.<profile>.json.

    python benchmarks/decoding.py [--repeats 5] [--lengths 10 30 60 120]
"""

import argparse
import time
import warnings

import torch

from annotated.plumbing import get_profile, save_results, seed_everything, timer
from annotated.transformer import Transformer, TransformerConfig, decode_step_seconds, greedy_decode

NEVER = -1  # an <eos> id no word has: every output runs to max_len


def _whole_output(model: Transformer, src: torch.Tensor, length: int,
                  repeats: int) -> dict[str, float]:
    """Seconds of a greedy output of `length` words, cached and recomputed, alternated."""
    cached, recomputed = [], []
    for _ in range(repeats):
        for use_cache, times in ((True, cached), (False, recomputed)):
            start = time.perf_counter()
            out = greedy_decode(model, src, length, 2, NEVER, use_cache=use_cache)
            times.append(time.perf_counter() - start)
            assert out.shape == (src.size(0), length)
    ratios = sorted(r / c for r, c in zip(recomputed, cached))
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {"cached_s": median(cached), "recomputed_s": median(recomputed),
            "ratio": median(ratios), "ratio_min": ratios[0], "ratio_max": ratios[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 30, 60, 120])
    args = parser.parse_args()
    seed_everything(0)
    cfg = TransformerConfig(8000, 6000, d_model=256, n_heads=8, n_layers=3, d_ff=1024)
    model = Transformer(cfg).eval()
    src = torch.randint(4, cfg.src_vocab, (args.batch, 14))
    # the <eos> id is NEVER on purpose (full-length outputs): no source ends in it
    warnings.filterwarnings("ignore", "source rows .* do not end in <eos>")
    with timer() as wall:
        steps = {str(t): decode_step_seconds(model, src, t, args.repeats)
                 for t in args.lengths}
        outputs = {str(t): _whole_output(model, src, t, max(args.repeats // 2, 1))
                   for t in args.lengths}
    metrics = {"decode_step": steps, "whole_output": outputs}
    settings = vars(args) | {"model": "d_model 256, 8 heads, 3+3 layers, d_ff 1024",
                             "threads": torch.get_num_threads(), "timing": "median, "
                             "variants alternated run by run"}
    path = save_results("05_transformer_decoding_benchmark", metrics, settings, wall["seconds"],
                        profile=get_profile())
    for name, table in metrics.items():
        for t, r in table.items():
            print(f"{name:12s} t={t:>3s}: recomputed {1000 * r['recomputed_s']:8.1f} ms, "
                  f"cached {1000 * r['cached_s']:7.1f} ms, {r['ratio']:5.1f}x "
                  f"(runs {r['ratio_min']:.1f}-{r['ratio_max']:.1f}x)")
    print("written:", path)


if __name__ == "__main__":
    main()
