"""One decoding API for both model families (issue 19): greedy_decode, beam_search and
decode_attention take a Seq2Seq (chapter 3) or a Transformer (chapter 5) with the same
arguments and return the same types; the attention is the decode's own."""

from __future__ import annotations

import itertools

import pytest
import torch

from annotated.seq2seq import Seq2Seq, Seq2SeqConfig
from annotated.transformer import (
    EncoderOnlyConfig,
    EncoderOnlyTranslator,
    Transformer,
    TransformerConfig,
    beam_search,
    beam_search_decoder,
    decode_attention,
    decode_step,
    greedy_decode,
    start_cache,
)

PAD, SOS, EOS = 1, 2, 3
V_SRC, V_TGT = 12, 9


def _transformer(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig(V_SRC, V_TGT, d_model=16, n_heads=2, n_layers=2, d_ff=32, dropout=0.1)
    return Transformer(cfg)


def _seq2seq(seed: int = 0, cell: str = "lstm", attention: str | None = "additive") -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(Seq2SeqConfig(V_SRC, V_TGT, cell=cell, attention=attention, emb_dim=8,
                                 hidden_dim=8, dropout=0.1))


FAMILIES = {"transformer": _transformer, "lstm+attn": _seq2seq,
            "rnn+cos": lambda seed=0: _seq2seq(seed, "rnn", "cosine")}


def _src() -> torch.Tensor:
    """Three sentences as the data gives them: ids, <eos>, then <pad>."""
    return torch.tensor([[4, 5, 6, 7, EOS], [5, 9, 4, EOS, PAD], [10, EOS, PAD, PAD, PAD]])


def _logprob_of(model, src: torch.Tensor, hyp: torch.Tensor) -> torch.Tensor:
    """Teacher-forced log p of each hypothesis (to its <eos>), <pad> and <sos> forbidden."""
    inp = torch.cat([torch.full((hyp.size(0), 1), SOS), hyp], dim=1)[:, :-1]
    with torch.no_grad():
        logits = model.eval()(src, inp)
    logits[..., [PAD, SOS]] = float("-inf")
    logp = logits.log_softmax(-1).gather(-1, hyp[..., None]).squeeze(-1)
    return logp.masked_fill(hyp == PAD, 0.0).sum(-1)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_same_calls_and_return_types_for_every_family(family):
    model, src = FAMILIES[family](), _src()
    out = greedy_decode(model, src, 7)
    assert out.dtype == torch.long and out.shape[0] == 3 and out.shape[1] <= 7
    out2, attn = greedy_decode(model, src, 7, return_attention=True)
    assert torch.equal(out, out2) and attn.shape == (*out.shape, src.size(1))
    best = beam_search(model, src, 3, 7)
    beams, scores = beam_search(model, src, 3, 7, return_all=True)
    best2, best_attn = beam_search(model, src, 3, 7, return_attention=True)
    assert torch.equal(best, beams[:, 0]) and torch.equal(best, best2)
    assert beams.shape[:2] == (3, 3) and scores.shape == (3, 3)
    assert best_attn.shape == (*best.shape, src.size(1))
    assert model.training  # the decoders restore the mode they found


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_rows_are_the_words_written_and_sum_to_one_until_eos(family):
    model, src = FAMILIES[family](seed=3), _src()
    out, attn = greedy_decode(model, src, 7, return_attention=True)
    written = torch.ones_like(out, dtype=torch.bool)
    for b, row in enumerate(out.tolist()):
        if EOS in row:  # rows after <eos> are padding: zero
            written[b, row.index(EOS) + 1:] = False
    sums = attn.sum(-1)
    torch.testing.assert_close(sums[written], torch.ones(int(written.sum())))
    assert (sums[~written] == 0).all()
    assert (attn[..., 3:][src[:, None, 3:].expand_as(attn[..., 3:]) == PAD] == 0).all()  # no weight on <pad>


def test_greedy_decode_of_a_seq2seq_is_its_own_method():
    model, src = _seq2seq(seed=1), _src()
    out, attn = greedy_decode(model, src, 8, return_attention=True)
    ref_out, ref_attn = model.eval().greedy_decode(src, 8, return_attention=True)
    assert torch.equal(out, ref_out)
    torch.testing.assert_close(attn, ref_attn, atol=0, rtol=0)  # zero rows after <eos> too


@pytest.mark.parametrize("family", [*FAMILIES, "encoder-only"])
def test_every_model_has_the_greedy_method_and_it_is_the_function(family):
    if family == "encoder-only":
        torch.manual_seed(0)
        model = EncoderOnlyTranslator(EncoderOnlyConfig(V_SRC, V_TGT, d_model=8, n_heads=2))
    else:
        model = FAMILIES[family](seed=9)
    src = _src()
    out, attn = model.greedy_decode(src, 7, return_attention=True)
    ref, ref_attn = greedy_decode(model, src, 7, return_attention=True)
    assert torch.equal(out, ref) and torch.equal(model.greedy_decode(src, 7), ref)
    assert (attn is None) == (ref_attn is None) == (family == "encoder-only")
    if attn is not None:
        torch.testing.assert_close(attn, ref_attn, atol=0, rtol=0)


@pytest.mark.parametrize("use_cache", [True, False])
def test_transformer_greedy_attention_is_recorded_while_decoding(use_cache):
    """The recorded rows equal a hand-written cached decode's last-layer cross-attention,
    and decode_attention's teacher-forced re-reading gives the same numbers."""
    model, src = _transformer(seed=5).eval(), _src()
    out, attn = greedy_decode(model, src, 6, use_cache=use_cache, return_attention=True)
    with torch.no_grad():
        memory, mask = model.encode(src)
        cache, word, rows = start_cache(model, memory, mask), torch.full((3,), SOS), []
        for t in range(out.size(1)):
            decode_step(model, word, cache)
            rows.append(model.decoder.layers[-1].cross_attn.attn[:, :, -1].mean(1))
            word = out[:, t]
    by_hand = torch.stack(rows, 1) * (attn.sum(-1, keepdim=True) > 0)
    torch.testing.assert_close(attn, by_hand, atol=1e-6, rtol=0)
    torch.testing.assert_close(decode_attention(model, src, out), attn, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_seq2seq_beam_scores_are_its_log_probabilities(cell):
    model, src = _seq2seq(seed=2, cell=cell), _src()
    beams, scores = beam_search(model, src, 4, 7, length_penalty=0.0, return_all=True)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    for b in range(3):
        recomputed = _logprob_of(model, src[b:b + 1].expand(4, -1), beams[b])
        torch.testing.assert_close(scores[b], recomputed, atol=1e-4, rtol=0)
    greedy = greedy_decode(model, src, 7)
    greedy = greedy.masked_fill((greedy == PAD) | (greedy == SOS), EOS)  # a legal output
    assert (scores[:, 0] >= _logprob_of(model, src, greedy) - 1e-4).all()


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_seq2seq_beam_search_matches_exhaustive_search(alpha):
    """A beam wide enough for every prefix finds the best of all outputs (brute force)."""
    torch.manual_seed(4)
    model = Seq2Seq(Seq2SeqConfig(V_SRC, 7, emb_dim=8, hidden_dim=8, dropout=0.0)).eval()
    src = _src()
    max_len, k, words = 4, 64, [0, 4, 5, 6]  # 4 emittable words: 4^3 = 64 prefixes of 3
    beams, scores = beam_search(model, src, k, max_len, length_penalty=alpha, return_all=True)
    hyps = [[*w, EOS] for n in range(max_len) for w in itertools.product(words, repeat=n)]
    hyps += [list(w) for w in itertools.product(words, repeat=max_len)]
    table = torch.full((len(hyps), max_len + 1), PAD)
    for i, h in enumerate(hyps):
        table[i, : len(h)] = torch.tensor(h)
    table = table[:, :max_len]
    for b in range(src.size(0)):
        logp = _logprob_of(model, src[b:b + 1].expand(len(hyps), -1), table)
        exact = logp / ((5.0 + (table != PAD).sum(-1).float()) / 6.0) ** alpha
        best, order = exact.sort(descending=True)
        torch.testing.assert_close(scores[b], best[:k], atol=1e-5, rtol=0)
        assert torch.equal(beams[b, 0], table[order[0], : beams.size(2)])


def test_seq2seq_beam_search_stops_early_without_changing_the_result():
    model, src = _seq2seq(seed=6), _src()
    early = beam_search(model, src, 3, 12, return_all=True)
    late = beam_search(model, src, 3, 12, return_all=True, early_stopping=False)
    assert torch.equal(early[0], late[0])
    torch.testing.assert_close(early[1], late[1])


@pytest.mark.parametrize("family", ["transformer", "lstm+attn"])
def test_beam_attention_is_the_reread_of_the_best_output(family):
    model, src = FAMILIES[family](seed=7), _src()
    best, attn = beam_search(model, src, 3, 7, return_attention=True)
    torch.testing.assert_close(attn, decode_attention(model, src, best))


def test_models_without_attention_return_none():
    src = _src()
    plain = _seq2seq(attention=None)
    assert greedy_decode(plain, src, 5, return_attention=True)[1] is None
    assert beam_search(plain, src, 2, 5, return_attention=True)[1] is None
    torch.manual_seed(0)
    enc_only = EncoderOnlyTranslator(EncoderOnlyConfig(V_SRC, V_TGT, d_model=8, n_heads=2))
    out, attn = greedy_decode(enc_only, src, 5, return_attention=True)
    assert attn is None and out.shape[0] == 3


def test_translate_takes_the_same_decoders_for_both_families():
    from annotated.translation import TranslationDataset, Vocab, translate

    vocab = Vocab(["<unk>", "<pad>", "<sos>", "<eos>", *[f"w{i}" for i in range(V_TGT - 4)]])
    pairs = [[4, 5, 6, EOS], [5, 9, 4, EOS], [10, 11, EOS]]
    ds = TranslationDataset(pairs, [[SOS, 4, EOS]] * 3, [0, 1, 2], {})
    padded = torch.nn.utils.rnn.pad_sequence([torch.tensor(p) for p in pairs], batch_first=True,
                                             padding_value=PAD)
    for model in (_transformer(), _seq2seq()):
        for decode, direct in ((greedy_decode, greedy_decode(model, padded, 14)),
                               (beam_search_decoder(3), beam_search(model, padded, 3, 14))):
            hyps = translate(model, ds, vocab, decode=decode, bucket=False)
            assert hyps == [vocab.decode(row) for row in direct]


def test_bad_calls_name_the_problem():
    src = _src()
    torch.manual_seed(0)
    enc_only = EncoderOnlyTranslator(EncoderOnlyConfig(V_SRC, V_TGT, d_model=8, n_heads=2))
    with pytest.raises(TypeError, match="writes every position at once"):
        beam_search(enc_only, src, 2, 5)
    with pytest.raises(TypeError, match="take a Seq2Seq, a Transformer or an EncoderOnlyTranslator"):
        greedy_decode(torch.nn.Linear(2, 2), src, 5)
    with pytest.raises(ValueError, match="a Seq2Seq decodes with its own ids"):
        greedy_decode(_seq2seq(), src, 5, sos_idx=0)
    with pytest.raises(ValueError, match="max_len must be an integer >= 1"):
        beam_search(_seq2seq(), src, 2, 0)
    with pytest.raises(ValueError, match="all padding"):
        beam_search(_seq2seq(), torch.full((1, 3), PAD), 2, 4)
    with pytest.raises(ValueError, match="src ids must be in"):
        beam_search(_seq2seq(), torch.tensor([[4, V_SRC]]), 2, 4)


def test_translate_decodes_every_family_by_default_and_names_the_fix_otherwise():
    from annotated.translation import BagOfWordsTranslator, TranslationDataset, Vocab, translate

    vocab = Vocab(["<unk>", "<pad>", "<sos>", "<eos>", *[f"w{i}" for i in range(V_TGT - 4)]])
    pairs = [[4, 5, EOS], [6, 7, 8, EOS]]
    ds = TranslationDataset(pairs, [[SOS, 4, EOS]] * 2, [0, 1], {})
    torch.manual_seed(0)
    enc_only = EncoderOnlyTranslator(EncoderOnlyConfig(V_SRC, V_TGT, d_model=8, n_heads=2))
    padded = torch.tensor([[4, 5, EOS, PAD], [6, 7, 8, EOS]])  # one batch, as translate's
    for model in (_transformer(), enc_only, _seq2seq()):
        hyps = translate(model, ds, vocab, bucket=False)  # no decode= needed
        direct = greedy_decode(model, padded, padded.size(1) + 10)
        assert hyps == [vocab.decode(row) for row in direct], type(model).__name__
    hint = "no greedy_decode method: pass decode=annotated.transformer.greedy_decode"
    with pytest.raises(TypeError, match=hint):  # chapter 2's baseline has no decoder
        translate(BagOfWordsTranslator(V_SRC, V_TGT, d=8), ds, vocab)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_source_without_eos_gets_a_warning_naming_the_rows(family):
    model, src = FAMILIES[family](), _src()
    no_eos = src.masked_fill(src == EOS, PAD)  # the mistake: ids without <eos>
    decoders = [lambda s: greedy_decode(model, s, 5), lambda s: beam_search(model, s, 2, 5)]
    if family == "transformer":  # its method is the function
        decoders.append(lambda s: model.greedy_decode(s, 5))
    for decode in decoders:
        with pytest.warns(UserWarning, match=r"source rows \[0, 1, 2\] do not end in <eos> \(id 3\)"):
            decode(no_eos)
    mixed = src.clone()
    mixed[1, 3] = PAD  # only sentence 1 lacks its <eos>
    with pytest.warns(UserWarning, match=r"source rows \[1\] do not end"):
        greedy_decode(model, mixed, 5)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rows that end in <eos>: no warning at all
        greedy_decode(model, src, 5)
        beam_search(model, src, 2, 5)


def test_seq2seq_greedy_method_runs_in_eval_mode_and_restores_the_mode():
    model, src = _seq2seq(seed=8).train(), _src()
    first = model.greedy_decode(src, 8)
    assert model.training  # restored
    assert torch.equal(first, model.greedy_decode(src, 8))  # no dropout noise between calls
    assert torch.equal(first, model.eval().greedy_decode(src, 8))


@pytest.mark.parametrize("family", FAMILIES)
def test_sources_unlike_the_data_are_named(family):
    """A <sos> in a source and a row of <unk> only are warned about; a row of padding
    alone is refused with the same words for both families."""
    model, src = FAMILIES[family](), _src()
    with_sos = torch.cat([torch.full((3, 1), SOS), src], dim=1)  # the mistake: <sos> first
    with pytest.warns(UserWarning, match=r"source rows \[0, 1, 2\] hold <sos> \(id 2\)"):
        greedy_decode(model, with_sos, 5)
    unknown = src.masked_fill((src != EOS) & (src != PAD), 0)  # capitalised words -> <unk>
    with pytest.warns(UserWarning, match=r"source rows \[0, 1, 2\] hold no word but <unk>"):
        beam_search(model, unknown, 2, 5)
    with pytest.raises(ValueError, match=r"source sentences \[1\] are all padding"):
        greedy_decode(model, torch.stack([src[0], torch.full((5,), PAD)]), 5)


@pytest.mark.parametrize("family", FAMILIES)
def test_source_that_is_not_a_long_or_int_tensor_is_refused_by_every_family(family):
    model, src = FAMILIES[family](), _src()
    for bad in (src.tolist(), src.int(), src.to(torch.uint8), src.float(), src[0]):
        with pytest.raises(TypeError, match="src must be a"):
            greedy_decode(model, bad, 5)


def test_vocabularies_of_another_size_are_refused_not_translated_into_nonsense():
    from annotated.transformer import translate_sentence
    from annotated.translation import TranslationDataset, Vocab, translate

    words = lambda n: Vocab(["<unk>", "<pad>", "<sos>", "<eos>", *[f"w{i}" for i in range(n - 4)]])  # noqa: E731
    de, en = words(V_SRC), words(V_TGT)
    ds = TranslationDataset([[4, 5, EOS]], [[SOS, 4, EOS]], [0], {})
    for model in (_transformer(), _seq2seq()):
        assert translate_sentence(model, "w0 w1", de, en).words is not None  # the right sizes
        with pytest.raises(ValueError, match=f"src_vocab has {V_SRC + 3} words but the model "
                                             f"was built for {V_SRC}"):
            translate_sentence(model, "w0 w1", words(V_SRC + 3), en)
        with pytest.raises(ValueError, match=f"tgt_vocab has {V_TGT + 1} words but the model"):
            translate_sentence(model, "w0 w1", de, words(V_TGT + 1))
        with pytest.raises(ValueError, match="it is another data set's vocabulary"):
            translate(model, ds, words(V_TGT + 1))


def test_both_translation_families_train_through_the_same_arguments():
    import inspect

    from annotated.seq2seq import train_seq2seq
    from annotated.transformer import train_transformer

    names = [list(inspect.signature(f).parameters) for f in (train_seq2seq, train_transformer)]
    assert names[0][1:] == names[1][1:] == ["train_loader", "val_loader", "recipe", "checkpoint",
                                            "verbose", "max_eval_steps"]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_rows_after_an_early_eos_are_exactly_zero(family):
    """Sentence 0 is made to write <eos> as its 2nd word while the others go on (an
    untrained model rarely ends early by itself): its rows after that are 0, every
    row up to and with an <eos> is a distribution, by the function and the method."""
    model, src = FAMILIES[family](seed=3).eval(), _src()
    out_layer = model.generator if isinstance(model, Transformer) else model.decoder.out
    calls = []

    def force(module, inputs, logits):  # logits (B, V), or (B, 1, V) for one new word
        calls.append(1)
        logits = logits.clone()
        logits[..., [PAD, SOS]] = -1e4  # words only (an untrained Seq2Seq may pick them)
        logits[1:, ..., EOS] = -1e4  # the others do not end
        logits[0, ..., EOS] = 1e4 if len(calls) == 2 else -1e4  # sentence 0: word 2
        return logits

    hook = out_layer.register_forward_hook(force)
    try:
        out, attn = greedy_decode(model, src, 7, return_attention=True)
        calls.clear()
        method_out, method_attn = model.greedy_decode(src, 7, return_attention=True)
    finally:
        hook.remove()
    assert out[0, 1] == EOS and (out[0, 2:] == PAD).all() and out.size(1) == 7
    is_eos = (out == EOS).long()
    after = is_eos.cumsum(1) - is_eos > 0  # (B, L): steps after a sentence's <eos>
    assert after[0, 2:].all() and (attn[after] == 0).all()
    torch.testing.assert_close(attn[~after].sum(-1), torch.ones(int((~after).sum())))
    assert torch.equal(method_out, out) and torch.equal(method_attn, attn)


def test_a_source_warning_points_at_the_callers_line():
    model, no_eos = _transformer(), torch.tensor([[4, 5, 6]])
    for call in (lambda: greedy_decode(model, no_eos, 4), lambda: model.greedy_decode(no_eos, 4),
                 lambda: beam_search(model, no_eos, 2, 4)):
        with pytest.warns(UserWarning, match="do not end in <eos>") as caught:
            call()
        assert caught[0].filename == __file__, caught[0].filename  # not the package's


def test_a_row_of_eos_alone_is_not_called_unknown_words():
    import warnings

    model = _transformer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        greedy_decode(model, torch.tensor([[EOS, PAD], [4, EOS]]), 4)  # an empty sentence


def test_train_transformer_keeps_the_loaders_token_budget_in_the_run(tmp_path):
    """The batch size is the loader's, and part of the run: a finished run is not
    loaded for another budget (and files from before keep their key, recipe.max_tokens)."""
    from annotated.plumbing import CheckpointError
    from annotated.transformer import TransformerRecipe, train_transformer
    from annotated.translation import TranslationDataset, make_loader

    g = torch.Generator().manual_seed(0)
    src = [torch.randint(4, V_SRC, (n,), generator=g).tolist() + [EOS] for n in (3, 5, 4, 6)]
    tgt = [[SOS, *torch.randint(4, V_TGT, (n,), generator=g).tolist(), EOS] for n in (4, 2, 5, 3)]
    ds = TranslationDataset(src, tgt, list(range(4)), {})
    path, recipe = tmp_path / "tf.pt", TransformerRecipe(epochs=1, warmup=1)
    train_transformer(_transformer(), make_loader(ds, 20, seed=0), make_loader(ds, 20),
                      recipe, checkpoint=path, verbose=False)
    assert torch.load(path, weights_only=True)["config"]["recipe.max_tokens"] == 20
    with pytest.raises(CheckpointError, match="recipe.max_tokens: saved 20, wanted 30"):
        train_transformer(_transformer(), make_loader(ds, 30, seed=0), make_loader(ds, 20),
                          recipe, checkpoint=path, verbose=False)
