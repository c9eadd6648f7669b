"""A few steps of the training appendix's `fit` under torchrun; tests/test_training.py checks it.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py OUT.pt

Every process builds the same toy data and model; the training loader is sharded over the
processes by the batch sampler, `fit` joins the gloo group and wraps the model in
DistributedDataParallel, and rank 0 saves the trained weights to OUT.pt.
"""

from __future__ import annotations

import functools
import sys

import torch

from annotated import training as TR
from annotated import translation as T
from annotated.plumbing import distributed_env

MAX_TOKENS, STEPS = 60, 4


def toy_dataset(n: int = 64, seed: int = 0) -> T.TranslationDataset:
    """Random source sentences of 2-7 words and a fixed word-for-word 'translation' of them."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(12, generator=g) + 4
    src, tgt = [], []
    for length in torch.randint(2, 8, (n,), generator=g).tolist():
        words = torch.randint(0, 12, (length,), generator=g).tolist()
        src.append([w + 4 for w in words] + [T.EOS_IDX])
        tgt.append([T.SOS_IDX] + [int(perm[w]) for w in words] + [T.EOS_IDX])
    return T.TranslationDataset(src, tgt, list(range(n)), {"empty": 0, "overlong": 0})


def setup():
    """The same data, initial weights, optimizer, settings and step in every process (no dropout)."""
    torch.manual_seed(0)
    model = T.BagOfWordsTranslator(16, 16, d=8, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    config = TR.TrainConfig(epochs=1, max_steps=STEPS, patience=None, verbose=False)
    step = functools.partial(T.teacher_forcing_step, label_smoothing=0.1)
    return toy_dataset(), model, optimizer, config, step


def main(out: str) -> None:
    torch.set_num_threads(1)
    data, model, optimizer, config, step = setup()
    val = T.make_loader(data, MAX_TOKENS, shuffle=False)
    TR.fit(model, step, T.make_loader(data, MAX_TOKENS, seed=0),
           evaluate=lambda m: T.evaluate(m, val), optimizer=optimizer, config=config,
           checkpoint=out + ".ckpt")  # every process's random streams go in it
    if distributed_env().is_main:
        torch.save(model.state_dict(), out)


if __name__ == "__main__":
    main(sys.argv[1])
