"""Chapter 5's recipe search: short Transformer runs on Multi30k, one knob at a time.

Each run trains for the same number of epochs (a fraction of the chapter's run) and reports the
measured seconds per step, the validation perplexity (teacher forcing) and the greedy sacreBLEU of
the first `--bleu-sentences` validation sentences. The results go to
results/05_transformer_recipe.<profile>.json, which the chapter's appendix section reads.

    ANNOTATED_DATA=../shared/data nice -n 10 .venv/bin/python benchmarks/transformer_recipe.py
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

from annotated.plumbing import get_profile, save_results, seed_everything
from annotated.training import TrainConfig, fit
from annotated.transformer import (
    Transformer,
    TransformerConfig,
    greedy_search,
    noam_schedule,
)
from annotated.translation import (
    bleu_report,
    evaluate,
    make_dataset,
    make_loader,
    prepare_multi30k,
    teacher_forcing_step,
    translate,
)

BASE = dict(d_model=128, n_heads=4, n_layers=2, d_ff=512, dropout=0.1, norm_first=False,
            tie_embeddings=False, max_tokens=1500, lr=1e-3, warmup=400, label_smoothing=0.0)
VARIANTS = {
    "base": {},
    "peak lr 2e-3": dict(lr=2e-3),
    "label smoothing 0.1": dict(label_smoothing=0.1),
    "tied embeddings": dict(tie_embeddings=True),
    "pre-norm": dict(norm_first=True),
    "d_model 256, d_ff 1024": dict(d_model=256, d_ff=1024),
}


def run(name: str, cfg: dict, data, epochs: float, bleu_sentences: int) -> dict:
    seed_everything(0)
    model = Transformer(TransformerConfig(
        len(data.src_vocab), len(data.tgt_vocab), cfg["d_model"], cfg["n_heads"],
        cfg["n_layers"], cfg["d_ff"], cfg["dropout"], cfg["norm_first"],
        tie_embeddings=cfg["tie_embeddings"]))
    train_loader = make_loader(data.train, cfg["max_tokens"], seed=0)
    val_loader = make_loader(data.val, 4000, shuffle=False)
    steps_per_epoch = len(train_loader)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), eps=1e-9)
    whole = max(1, int(epochs))
    config = TrainConfig(epochs=whole, max_steps=int(steps_per_epoch * epochs / whole), patience=None,
                         scheduler_interval="step", verbose=False)
    step = functools.partial(teacher_forcing_step, label_smoothing=cfg["label_smoothing"])
    start = time.perf_counter()
    history = fit(model, step, train_loader, evaluate=lambda m: evaluate(m, val_loader),
                  optimizer=optimizer, config=config,
                  scheduler=noam_schedule(optimizer, cfg["warmup"]))
    train_s = time.perf_counter() - start
    steps = config.max_steps * whole
    val_sub = make_dataset(data.val_pairs[:bleu_sentences], data.src_vocab, data.tgt_vocab)
    hyps = translate(model, val_sub, data.tgt_vocab, decode=greedy_search, bucket=False)
    bleu = bleu_report(hyps, [data.val_pairs[i] for i in val_sub.index])
    row = {"name": name, **cfg, "epochs": epochs, "steps": steps, "train_s": train_s,
           "s_per_step": sum(history["seconds"]) / steps, "val_ppl": history["val_ppl"][-1],
           "val_sacrebleu_greedy": bleu["sacrebleu"], "bleu_sentences": len(hyps)}
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--bleu-sentences", type=int, default=300)
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # 1 on a shared machine: 2 threads thrash under load
    data = prepare_multi30k()
    rows, start = [], time.perf_counter()
    for name, change in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        rows.append(run(name, {**BASE, **change}, data, args.epochs, args.bleu_sentences))
        save_results("05_transformer_recipe", {"runs": rows},
                     {"epochs": args.epochs, "bleu_sentences": args.bleu_sentences, "base": BASE},
                     time.perf_counter() - start, profile=get_profile())


if __name__ == "__main__":
    main()
