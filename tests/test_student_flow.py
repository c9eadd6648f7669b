"""The package as a student uses it (issue 19): a script in a folder of its own, outside
the repository, that trains tiny models of both translation families with the exported
entry points, translates a sentence that is not in the data with each (greedy and beam),
plots the attention of the decode, reloads a finished run from its checkpoint alone,
loads the shipped weights from their file alone, and draws a ViT's class-token map from
uint8 images; every bad input on the way gets one clear error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import warnings

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from annotated.plumbing import CheckpointError, checkpoint_dir, load_model
    from annotated.seq2seq import RecipeConfig, Seq2Seq, Seq2SeqConfig, train_seq2seq
    from annotated.training import load_shipped
    from annotated.transformer import (Transformer, TransformerConfig, TransformerRecipe,
                                       beam_search, greedy_decode, train_transformer,
                                       translate_sentence)
    from annotated.translation import EOS_IDX, make_loader, prepare_multi30k, translate
    from annotated.vit import (ClassifierRecipe, ViTConfig, VisionTransformer, load_cifar10,
                               normalize, predict, train_classifier)
    from annotated.vit_analysis import cls_attention_maps

    def expect(error, match, fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except error as err:
            assert match in str(err), (match, str(err))
            print(f"{error.__name__}: {err}")
            return
        raise AssertionError(f"no {error.__name__} for {match!r}")

    torch.manual_seed(0)
    data = prepare_multi30k(train_size=300, val_size=30, test_size=30)
    de, en = data.src_vocab, data.tgt_vocab  # the Vocab objects: no size mix-up
    s2s = Seq2Seq(Seq2SeqConfig(de, en, emb_dim=16, hidden_dim=16))
    val = make_loader(data.val, 4000, shuffle=False)  # both families: the same arguments
    train_seq2seq(s2s, make_loader(data.train, 1500, seed=0), val, RecipeConfig(epochs=0.2),
                  checkpoint=checkpoint_dir() / "s2s.pt")
    tf = Transformer(TransformerConfig(de, en, d_model=16, n_heads=2, n_layers=1, d_ff=32))
    train_transformer(tf, make_loader(data.train, 1500, seed=0), val,
                      TransformerRecipe(epochs=1, warmup=5, max_steps=3),
                      checkpoint=checkpoint_dir() / "tf.pt")
    assert not s2s.training and not tf.training  # trained or loaded: ready to use

    sentence = "Ein Hund läuft durch den Park."
    fig, axes = plt.subplots(2, 2)
    for row, model in zip(axes, (s2s, tf)):
        for ax, beam in zip(row, (None, 3)):
            t = translate_sentence(model, sentence, de, en, beam_size=beam)
            assert t.attention.shape == (len(t.rows), len(t.source)), t
            assert torch.allclose(t.attention.sum(-1), torch.ones(len(t.rows)), atol=1e-5)
            ax.imshow(t.attention, vmin=0, vmax=1)
            print(type(model).__name__, beam, "->", t.text)
        src = torch.tensor([de.encode(["ein", "hund"]) + [EOS_IDX]])
        out, attn = greedy_decode(model, src, 6, return_attention=True)
        best, battn = beam_search(model, src, 2, 6, return_attention=True)
        assert attn.shape == (*out.shape, 3) and battn.shape == (*best.shape, 3)
        assert torch.equal(model.greedy_decode(src, 6), out)  # the method is the function
        with warnings.catch_warnings(record=True) as caught:  # forgetting the <eos>
            warnings.simplefilter("always")
            greedy_decode(model, src[:, :-1], 6)
        assert "do not end in <eos>" in str(caught[0].message), caught
        print("warned:", caught[0].message)
        hyps = translate(model, data.test, en)  # every family, no decode= needed
        assert len(hyps) == len(data.test) and all(isinstance(h, list) for h in hyps)
    fig.savefig("attention.png")

    again = load_model(checkpoint_dir() / "tf.pt")  # the finished run alone: no data
    src = torch.tensor([de.encode(["ein", "hund", "läuft"]) + [3]])
    assert torch.equal(greedy_decode(again, src, 8), greedy_decode(tf, src, 8))
    assert type(load_model(checkpoint_dir() / "s2s.pt")) is Seq2Seq

    shipped = load_shipped(WEIGHTS / "05_transformer.full.int8.pt")  # the file alone
    assert type(shipped) is Transformer and shipped.cfg.d_model == 256 and not shipped.training
    expect(CheckpointError, "other vocabularies", load_shipped,
           WEIGHTS / "05_transformer.full.int8.pt", src_vocab=de, tgt_vocab=en)

    expect(ValueError, "the sentence is empty", translate_sentence, tf, "  ", de, en)
    expect(ValueError, "none of the words", translate_sentence, tf, "Xqzt Vbnm", de, en)
    expect(FileNotFoundError, "no checkpoint or weights file at", load_model, "nothing.pt")
    expect(FileNotFoundError, "no weights file at", load_shipped, "nothing.int8.pt")

    images, labels = load_cifar10("test")
    images = images[:8]  # uint8 (8, 3, 32, 32), as the loader gives them
    vit = VisionTransformer(ViTConfig(d_model=32, depth=2, n_heads=2, d_ff=64))
    probs = predict(vit, images)  # predict takes uint8 and normalises itself
    assert probs.shape == (8, 10)
    expect(TypeError, "pass normalize(images)", vit.attention_maps, images)
    expect(TypeError, "uint8", predict, vit, normalize(images))
    expect(ValueError, "raw pixel values", vit.attention_maps, images.float())
    expect(ValueError, "ToTensor", vit.attention_maps, images.float() / 255)
    train_classifier(vit, images, labels[:8], ClassifierRecipe(epochs=1, batch_size=4),
                     checkpoint=checkpoint_dir() / "vit.pt")
    vit_again = load_model(checkpoint_dir() / "vit.pt")  # no images needed to load it
    assert torch.equal(predict(vit_again, images), predict(vit, images))
    maps = cls_attention_maps(vit.attention_maps(normalize(images))[-1].mean(1))  # (8, 8, 8)
    assert maps.shape == (8, 8, 8)
    plt.figure()
    plt.imshow(maps[0])
    plt.savefig("cls_map.png")
    print("student flow: done")
''')


def test_a_students_script_outside_the_repository(tmp_path):
    data = os.environ.get("ANNOTATED_DATA")
    if not data or not (Path(data) / "multi30k").is_dir():
        pytest.skip("needs ANNOTATED_DATA with multi30k/ and cifar10 (../shared/data)")
    work = tmp_path / "my_scripts"
    work.mkdir()
    (work / "flow.py").write_text(f"from pathlib import Path\nWEIGHTS = Path({str(REPO / 'weights')!r})\n"
                                  + SCRIPT)
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANNOTATED_CHECKPOINTS", "ANNOTATED_RESULTS", "ANNOTATED_WEIGHTS")}
    env |= {"ANNOTATED_HOME": str(tmp_path / "home"), "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}
    run = subprocess.run([sys.executable, "flow.py"], cwd=work, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "student flow: done" in out
    # the training says where it looked before it trains; a second run would load
    ckpt = tmp_path / "home" / "checkpoints"
    assert f"no checkpoint at {ckpt / 's2s.pt'}" in out and f"no checkpoint at {ckpt / 'tf.pt'}" in out
    assert (work / "attention.png").stat().st_size > 0 and (work / "cls_map.png").stat().st_size > 0
    rerun = subprocess.run([sys.executable, "flow.py"], cwd=work, env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"no checkpoint at {ckpt / 'vit.pt'}" in out  # the vision family says so too
    for name in ("s2s.pt", "tf.pt", "vit.pt"):
        assert f"loaded the finished run {name}" in rerun.stdout
    assert "training for up to" not in rerun.stdout
