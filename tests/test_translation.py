"""Chapter 2: Multi30k loading, tokenisation, vocabulary, batching, the training loop, perplexity, BLEU."""

import gzip
import hashlib
import math
import sys
from collections import Counter

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from annotated import plumbing as P
from annotated import translation as T
from annotated.plumbing import distributed_env

HAVE_MULTI30K = all((P.data_dir() / "multi30k" / name).exists() for name in T.MULTI30K_FILES)
needs_data = pytest.mark.skipif(not HAVE_MULTI30K, reason="Multi30k not in $ANNOTATED_DATA/multi30k")


# --- loading: tiny fixtures in the real format --------------------------------------------

def _write_gz(path, lines: list[str]) -> str:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.write("".join(line + "\n" for line in lines))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_multi30k(tmp_path, monkeypatch):
    """A data folder whose 'val' split is two made-up pairs; MULTI30K_FILES carries their digests."""
    folder = tmp_path / "multi30k"
    folder.mkdir()
    files = dict(T.MULTI30K_FILES)
    files["val.de.gz"] = _write_gz(folder / "val.de.gz", ["Ein Hund rennt.  ", "Zwei  Katzen schlafen."])
    files["val.en.gz"] = _write_gz(folder / "val.en.gz", ["A dog runs.", " Two cats sleep. "])
    monkeypatch.setattr(T, "MULTI30K_FILES", files)
    monkeypatch.setenv("ANNOTATED_DATA", str(tmp_path))
    return folder


def test_load_multi30k_strips_lines_and_pairs_them(tiny_multi30k):
    assert T.load_multi30k("val") == [("Ein Hund rennt.", "A dog runs."),
                                      ("Zwei  Katzen schlafen.", "Two cats sleep.")]


def test_load_multi30k_mismatched_line_counts(tiny_multi30k):
    T.MULTI30K_FILES["val.en.gz"] = _write_gz(tiny_multi30k / "val.en.gz", ["A dog runs."])
    with pytest.raises(ValueError, match=r"val.de.gz has 2 lines but val.en.gz has 1"):
        T.load_multi30k("val")


def test_load_multi30k_corrupt_file_names_file_and_both_digests(tiny_multi30k):
    expected = T.MULTI30K_FILES["val.de.gz"]
    (tiny_multi30k / "val.de.gz").write_bytes(b"not gzip at all")
    actual = hashlib.sha256(b"not gzip at all").hexdigest()
    with pytest.raises(P.ChecksumError, match=rf"val.de.gz .*{actual}.*{expected}"):
        T.load_multi30k("val")


def test_load_multi30k_unknown_split():
    with pytest.raises(ValueError, match=r"unknown Multi30k split 'dev'.*'test', 'train', 'val'"):
        T.load_multi30k("dev")


def test_multi30k_digests_match_the_published_sums():
    sums = P.data_dir() / "multi30k" / "SHA256SUMS"
    if not sums.exists():
        pytest.skip("no SHA256SUMS in $ANNOTATED_DATA/multi30k")
    published = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
    assert published == T.MULTI30K_FILES


@needs_data
def test_real_multi30k_sizes_and_detokenizer_round_trip():
    sizes = {s: len(T.load_multi30k(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 29_000, "val": 1_014, "test": 1_000}
    refs = [en for _, en in T.load_multi30k("test")]
    exact = sum(T.detokenize_en(T.tokenize_en(r)) == r.lower() for r in refs)
    assert exact >= 995, exact  # measured: 1,000 of 1,000


# --- tokenisation ----------------------------------------------------------------------------

def test_tokenizers_lowercase_and_drop_the_newline():
    raw = "Two young, White males are outside.\n"
    assert [t.text for t in T.spacy_tokenizer("en")(raw)][-1] == "\n"  # the course's bug
    assert T.tokenize_en(raw) == ["two", "young", ",", "white", "males", "are", "outside", "."]
    assert T.tokenize_de("Zwei  Männer, z.B. im Freien.\n") == ["zwei", "männer", ",", "z.b.", "im",
                                                                 "freien", "."]
    assert T.tokenize_en("") == [] and T.tokenize_en(" \n ") == []


def test_tokenize_refuses_non_strings():
    with pytest.raises(TypeError, match="expects a str, got list"):
        T.tokenize_en(["a", "dog"])


@pytest.mark.parametrize("sentence", [
    'a man in a t-shirt says "hello".',
    "the dog's ball isn't red, it's blue!",
    "two people (a man and a woman) walk.",
])
def test_detokenize_inverts_tokenize(sentence):
    assert T.detokenize_en(T.tokenize_en(sentence)) == sentence


# --- vocabulary ------------------------------------------------------------------------------

def test_vocab_order_specials_and_min_freq():
    v = T.Vocab.build([["b", "a", "c"], ["a", "b", "d"], ["a", "e", "e"]], min_freq=2)
    assert v.itos == ["<unk>", "<pad>", "<sos>", "<eos>", "a", "b", "e"]  # a:3, then b:2 < e:2 alphabetically
    assert (v.unk_idx, v.pad_idx, v.sos_idx, v.eos_idx) == (0, 1, 2, 3)
    assert len(v) == 7 and "c" not in v
    assert v.encode(["a", "c", "zzz", "e"]) == [4, 0, 0, 6]  # unknown -> <unk>
    assert len(T.Vocab.build([["x"]], min_freq=1)) == 5


def test_vocab_decode_strips_specials_and_stops_at_eos():
    v = T.Vocab.build([["a", "b"]], min_freq=1)
    ids = [2, 4, 0, 5, 3, 4, 1]
    assert v.decode(ids) == ["a", "<unk>", "b"]
    assert v.decode(ids, strip_specials=False) == ["<sos>", "a", "<unk>", "b", "<eos>", "a", "<pad>"]
    assert v.decode(torch.tensor(ids)) == ["a", "<unk>", "b"]
    assert v.decode_batch(torch.tensor([ids, [3, 4, 4, 4, 4, 4, 4]])) == [["a", "<unk>", "b"], []]


def test_vocab_bad_input():
    v = T.Vocab.build([["a"]], min_freq=1)
    with pytest.raises(ValueError, match=r"ids \[9\] out of range for a vocabulary of 5 tokens"):
        v.decode([4, 9])
    with pytest.raises(ValueError, match=r"1-D sequence of ids, got shape \(1, 2\)"):
        v.decode(torch.tensor([[4, 4]]))
    with pytest.raises(TypeError, match="not a str"):
        v.encode("a dog")
    with pytest.raises(ValueError, match="must start with"):
        T.Vocab(["a", "<unk>", "<pad>", "<sos>", "<eos>"])
    with pytest.raises(ValueError, match=r"duplicate tokens.*\['a'\]"):
        T.Vocab([*T.SPECIALS, "a", "a"])
    with pytest.raises(ValueError, match="min_freq must be >= 1"):
        T.Vocab.build([["a"]], min_freq=0)


words = st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=4), min_size=1, max_size=30)


@given(st.lists(words, min_size=1, max_size=8), st.integers(1, 3))
@settings(max_examples=60, deadline=None)
def test_vocab_round_trip_property(sentences, min_freq):
    v = T.Vocab.build(sentences, min_freq=min_freq)
    counts = Counter(t for s in sentences for t in s)
    assert set(v.itos[4:]) == {t for t, n in counts.items() if n >= min_freq}
    assert [counts[t] for t in v.itos[4:]] == sorted((counts[t] for t in v.itos[4:]), reverse=True)
    for s in sentences:
        expected = [t if counts[t] >= min_freq else "<unk>" for t in s]
        assert v.decode(v.encode(s)) == expected


def test_vocab_save_load(tmp_path):
    v = T.Vocab.build([["ein", "hund", "für", "ein"]], min_freq=1)
    w = T.Vocab.load(v.save(tmp_path / "sub" / "vocab.json"))
    assert w.itos == v.itos and w.stoi == v.stoi
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.json is not a saved Vocab"):
        T.Vocab.load(tmp_path / "bad.json")



def test_vocab_digest_names_the_words_and_their_order():
    v = T.Vocab([*T.SPECIALS, "ein", "hund"])
    expected = hashlib.sha256("\n".join([*T.SPECIALS, "ein", "hund"]).encode()).hexdigest()[:16]
    assert v.digest() == expected and T.Vocab(list(v.itos)).digest() == expected  # equal words, equal digest
    assert T.Vocab([*T.SPECIALS, "hund", "ein"]).digest() != expected  # same words, other ids
    assert T.Vocab([*T.SPECIALS, "ein", "hunde"]).digest() != expected


# --- datasets and batching ---------------------------------------------------------------------

@pytest.fixture
def vocabs():
    de = T.Vocab.build([T.tokenize_de("Ein Hund rennt über das Gras.")], min_freq=1)
    en = T.Vocab.build([T.tokenize_en("A dog runs over the grass.")], min_freq=1)
    return de, en


def test_make_dataset_layout_empty_and_overlong(vocabs):
    de, en = vocabs
    pairs = [("Ein Hund rennt.", "A dog runs."), ("", "A dog."), ("Ein Hund.", "  "),
             ("Ein Hund rennt über das Gras.", "A dog runs.")]
    ds = T.make_dataset(pairs, de, en, max_len=4)
    assert ds.skipped == {"empty": 2, "overlong": 1} and ds.index == [0] and len(ds) == 1
    src, tgt = ds[0]
    assert src == de.encode(["ein", "hund", "rennt", "."]) + [T.EOS_IDX]
    assert tgt == [T.SOS_IDX] + en.encode(["a", "dog", "runs", "."]) + [T.EOS_IDX]
    cut = T.make_dataset(pairs, de, en, max_len=4, overlong="truncate")
    assert cut.skipped == {"empty": 2, "overlong": 0} and cut.index == [0, 3]
    assert cut[1][0] == de.encode(["ein", "hund", "rennt", "über"]) + [T.EOS_IDX]
    assert T.make_dataset([("Ein Katze.", "A cat.")], de, en)[0][1][2] == T.UNK_IDX  # unknown -> <unk>


def test_make_dataset_bad_arguments(vocabs):
    with pytest.raises(ValueError, match="overlong must be 'drop' or 'truncate', got 'cut'"):
        T.make_dataset([], *vocabs, max_len=3, overlong="cut")
    with pytest.raises(ValueError, match="max_len must be a positive"):
        T.make_dataset([], *vocabs, max_len=0)


def test_pad_batch_pads_at_the_end():
    src, tgt = T.pad_batch([([5, 3], [2, 7, 8, 3]), ([5, 6, 7, 3], [2, 3])])
    assert src.tolist() == [[5, 3, 1, 1], [5, 6, 7, 3]]
    assert tgt.tolist() == [[2, 7, 8, 3], [2, 3, 1, 1]]
    assert src.dtype == torch.long
    with pytest.raises(ValueError, match="zero examples"):
        T.pad_batch([])


def _random_dataset(lengths: list[tuple[int, int]]) -> T.TranslationDataset:
    # token ids >= 4 that also encode the example number, so rows can be traced back
    src = [[4 + i] * s + [T.EOS_IDX] for i, (s, _) in enumerate(lengths)]
    tgt = [[T.SOS_IDX] + [4 + i] * t + [T.EOS_IDX] for i, (_, t) in enumerate(lengths)]
    return T.TranslationDataset(src, tgt, list(range(len(lengths))), {"empty": 0, "overlong": 0})


@given(lengths=st.lists(st.tuples(st.integers(1, 30), st.integers(1, 30)), min_size=1, max_size=60),
       max_tokens=st.integers(1, 300), shuffle=st.booleans(), bucket=st.booleans(), seed=st.integers(0, 9))
@settings(max_examples=80, deadline=None)
def test_loader_epoch_invariants(lengths, max_tokens, shuffle, bucket, seed):
    ds = _random_dataset(lengths)
    loader = T.make_loader(ds, max_tokens=max_tokens, shuffle=shuffle, seed=seed, bucket=bucket)
    for _ in range(2):  # two epochs
        n_batches, seen = len(loader), []
        batches = list(loader)
        assert len(batches) == n_batches
        for src, tgt in batches:
            assert src.size(0) == tgt.size(0)
            assert src.size(0) == 1 or src.size(0) * max(src.size(1), tgt.size(1)) <= max_tokens
            for x in (src, tgt):
                pad = (x == T.PAD_IDX).int()
                assert torch.equal(pad, pad.cummax(dim=1).values)  # padding only at the end
                assert not pad[:, -1].all()  # no column of pure padding
            for s, t in zip(src, tgt, strict=True):
                i = int(s[0]) - 4
                assert s[s != T.PAD_IDX].tolist() == ds.src[i] and t[t != T.PAD_IDX].tolist() == ds.tgt[i]
                seen.append(i)
        assert sorted(seen) == list(range(len(ds)))  # every pair exactly once
        if not shuffle and not bucket:
            assert seen == list(range(len(ds)))  # dataset order


def test_loader_is_reproducible_and_epochs_differ():
    ds = _random_dataset([(i % 7 + 1, i % 5 + 1) for i in range(200)])
    order = lambda loader: [tuple(b[0][:, 0].tolist()) for b in loader]  # noqa: E731
    a, b = T.make_loader(ds, 60, seed=3), T.make_loader(ds, 60, seed=3)
    first = order(a)
    assert first == order(b)
    assert order(a) != first  # the next epoch is shuffled differently
    with pytest.raises(ValueError, match="max_tokens must be positive"):
        T.make_loader(ds, 0)


def test_bucketing_reduces_padding():
    # target lengths follow source lengths (as in real translations), give or take two tokens
    ds = _random_dataset([(1 + (i * 7) % 29, 1 + (i * 7) % 29 + i % 3) for i in range(500)])
    random = T.padding_fraction(T.make_loader(ds, 400, bucket=False))
    bucketed = T.padding_fraction(T.make_loader(ds, 400, bucket=True))
    assert bucketed < 0.5 * random


# --- loss and perplexity ---------------------------------------------------------------------

@given(B=st.integers(1, 4), T_=st.integers(1, 6), V=st.integers(4, 9), eps=st.sampled_from([0.0, 0.1, 0.3]),
       seed=st.integers(0, 100))
@settings(max_examples=40, deadline=None)
def test_sequence_loss_matches_torch_cross_entropy(B, T_, V, eps, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T_, V, generator=g, dtype=torch.float64)
    targets = torch.randint(0, V, (B, T_), generator=g)
    targets[0, 0] = 0  # at least one real (non-pad) token
    loss, nll_sum, n = T.sequence_loss(logits, targets, label_smoothing=eps)
    keep = targets != T.PAD_IDX
    assert n == int(keep.sum())
    ref = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=T.PAD_IDX,
                          label_smoothing=eps)
    assert torch.allclose(loss.double(), ref, atol=1e-5)
    plain = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=T.PAD_IDX,
                            reduction="sum")
    assert torch.allclose(nll_sum.double(), plain, atol=1e-4)


def test_sequence_loss_shape_error_and_empty_perplexity():
    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\).*\(2, 3, 5\) and \(2, 4\)"):
        T.sequence_loss(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="zero tokens"):
        T.perplexity(0.0, 0)
    assert T.perplexity(2000.0, 2) == math.inf  # a diverged model is reported, not a crash
    assert T.perplexity(torch.tensor(3 * math.log(5.0)), 3) == pytest.approx(5.0)


class _Fixed(nn.Module):
    """Logits that give every target token probability 1/V (uniform), or p_right on token 4."""

    def __init__(self, V: int, p_right: float | None = None):
        super().__init__()
        self.V, self.p_right = V, p_right
        self.dummy = nn.Parameter(torch.zeros(()))

    def _logits(self, B: int, T_: int) -> torch.Tensor:
        if self.p_right is None:
            return torch.zeros(B, T_, self.V) + self.dummy
        rest = (1 - self.p_right) / (self.V - 1)
        probs = torch.full((self.V,), rest)
        probs[4] = self.p_right
        return probs.log().expand(B, T_, self.V) + self.dummy

    def forward(self, src, tgt_in):
        return self._logits(*tgt_in.shape)

    def free_running_logits(self, src, tgt_len):
        return self._logits(src.size(0), tgt_len)


def test_perplexity_hand_computed():
    # two batches with 3 and 1 real target tokens: token-weighted, not a mean of batch means
    batches = [(torch.tensor([[5, 3]]), torch.tensor([[2, 4, 4, 3]])),
               (torch.tensor([[5, 3], [5, 3]]), torch.tensor([[2, 3], [2, 1]]))]
    assert T.evaluate(_Fixed(V=7), batches)["ppl"] == pytest.approx(7.0)
    p = 0.5  # token 4 gets 1/2, token 3 (<eos>) gets 0.5 / 6
    expected = math.exp(-(2 * math.log(0.5) + 2 * math.log(0.5 / 6)) / 4)
    out = T.evaluate(_Fixed(V=7, p_right=p), batches)
    assert out["tokens"] == 4 and out["ppl"] == pytest.approx(expected)
    assert T.free_running_perplexity(_Fixed(V=7, p_right=p), batches)["ppl"] == pytest.approx(expected)


def test_free_running_needs_the_protocol():
    with pytest.raises(TypeError, match="Linear has no free_running_logits"):
        T.free_running_perplexity(nn.Linear(2, 2), [])


def test_free_running_logits_are_greedy_teacher_forcing_on_own_output():
    torch.manual_seed(0)
    model = T.BagOfWordsTranslator(12, 10, d=8, dropout=0.0).eval()
    src = torch.tensor([[5, 6, 3, 1], [7, 3, 1, 1]])
    free = model.free_running_logits(src, 5)  # (2, 5, 10)
    fed = torch.cat([torch.full((2, 1), T.SOS_IDX), free.argmax(-1)[:, :-1]], dim=1)
    assert torch.allclose(model(src, fed), free, atol=1e-6)
    # padding in the source does not change the encoding
    assert torch.allclose(model.encode(src[:, :3]), model.encode(src))


# --- training loop ------------------------------------------------------------------------------

def _toy_data(n: int = 24, seed: int = 0):
    """A copy task with a fixed random word mapping: source word i -> target word perm[i]."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(12, generator=g) + 4
    lengths = torch.randint(2, 6, (n,), generator=g).tolist()
    src, tgt = [], []
    for L in lengths:
        words = (torch.randint(0, 12, (L,), generator=g)).tolist()
        src.append([w + 4 for w in words] + [T.EOS_IDX])
        tgt.append([T.SOS_IDX] + [int(perm[w]) for w in words] + [T.EOS_IDX])
    return T.TranslationDataset(src, tgt, list(range(n)), {"empty": 0, "overlong": 0})


@pytest.mark.parametrize("world", [2, 3])
def test_batch_sampler_shards_an_epoch_over_processes(monkeypatch, world):
    ds = _toy_data(50)
    everything = T.TokenBatchSampler(ds, 40, seed=1).batches(0)
    shares = []
    for rank in range(world):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        sampler = T.TokenBatchSampler(ds, 40, seed=1)
        shares.append(sampler.batches(0))
        assert len(sampler) == math.ceil(len(everything) / world)
        assert T.TokenBatchSampler(ds, 40, shuffle=False).batches(0) == \
            T.TokenBatchSampler(ds, 40, shuffle=False, shard=False).batches(0)  # evaluation: whole set
    assert len({len(s) for s in shares}) == 1  # the same number of steps in every process
    dealt = [b for step in zip(*shares) for b in step]  # step k: batches k*world ... k*world + world - 1
    assert dealt[: len(everything)] == everything  # every batch, once, in order ...
    assert dealt[len(everything):] == everything[: len(dealt) - len(everything)]  # ... then a few repeated


def test_distributed_env_rejects_bad_values(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match=r"WORLD_SIZE='two' is not an integer"):
        distributed_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"RANK=2 must lie in \[0, WORLD_SIZE=2\)"):
        distributed_env()


def test_progress_bar_is_quiet_with_tqdm_disable(monkeypatch, capsys):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert list(P.progress_bar(range(3), "x", enabled=None)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_progress_bar_is_quiet_in_the_book_build_even_on_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("ANNOTATED_BOOK_BUILD", "1")
    assert list(P.progress_bar(range(3), "x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("ANNOTATED_BOOK_BUILD")
    with P.progress_bar(desc="shown", total=2) as bar:  # a manual bar, as the ViT loop uses it
        bar.update(2)
    assert "shown" in capsys.readouterr().err


def test_plot_history_has_labelled_axes():
    import matplotlib

    matplotlib.use("Agg")
    h = {"epoch": [1, 2], "train_loss": [3.0, 2.0], "val_loss": [3.1, 2.5], "train_ppl": [20.1, 7.4],
         "val_ppl": [22.2, 12.2], "best_epoch": 2}
    fig = T.plot_history(h)
    assert [ax.get_ylabel() for ax in fig.axes] == ["cross-entropy (nats/token)", "perplexity"]
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)


# --- BLEU --------------------------------------------------------------------------------------

def _bleu_reference(hyps: list[list[str]], refs: list[list[str]]) -> float:
    """Plain corpus BLEU-4 (Papineni et al.), written independently of sacreBLEU."""
    match, total = [0] * 4, [0] * 4
    for h, r in zip(hyps, refs, strict=True):
        for n in range(1, 5):
            hn = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            rn = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            match[n - 1] += sum(min(c, rn[g]) for g, c in hn.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    if min(match) == 0:
        return 0.0
    c, r = sum(map(len, hyps)), sum(map(len, refs))
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(math.log(m / t) for m, t in zip(match, total, strict=True)) / 4)


def test_tokenized_bleu_hand_computed():
    ref = "the cat sat on the mat".split()
    assert T.tokenized_bleu(["mat on the cat sat".split()], [ref]) == 0.0  # no 4-gram matches
    short = "the cat sat on the".split()  # all precisions 1, brevity penalty exp(1 - 6/5)
    assert T.tokenized_bleu([short], [ref]) == pytest.approx(100 * math.exp(1 - 6 / 5))
    longer = "the cat sat on the red mat".split()
    by_hand = 100 * (6 / 7 * 4 / 6 * 3 / 5 * 2 / 4) ** 0.25
    assert T.tokenized_bleu([longer], [ref]) == pytest.approx(by_hand)


vocab_words = st.sampled_from("a the man dog runs in on grass red blue .".split())


@given(st.lists(st.tuples(st.lists(vocab_words, min_size=1, max_size=12),
                          st.lists(vocab_words, min_size=1, max_size=12)), min_size=1, max_size=6))
@settings(max_examples=60, deadline=None)
def test_tokenized_bleu_matches_an_independent_implementation(pairs):
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    assert T.tokenized_bleu(hyps, refs) == pytest.approx(_bleu_reference(hyps, refs), abs=1e-6)


def test_sacrebleu_is_case_insensitive_and_signed():
    refs = ["A man in a blue shirt is riding a red bike.", "Two dogs play in the snow near a fence."]
    hyps = ["a man in a blue shirt is riding a red bike.", "two dogs play in the snow near a fence."]
    score, signature = T.sacrebleu_corpus(hyps, refs)
    assert score == pytest.approx(100.0)
    assert "case:lc" in signature and "tok:13a" in signature
    assert T.sacrebleu_corpus(["a dog in the snow near a fence.", hyps[0]], refs)[0] < 100
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        T.sacrebleu_corpus(hyps, refs[:1])
    with pytest.raises(ValueError, match="empty corpus"):
        T.sacrebleu_corpus([], [])
    with pytest.raises(TypeError, match="lists of tokens, not strings"):
        T.tokenized_bleu(["a dog"], ["a dog"])


def test_bleu_report_on_perfect_and_detokenised_output():
    pairs = [("Ein Mann in einem T-Shirt.", "A man in a t-shirt's shadow, smiling."),
             ("Zwei Hunde.", "Two dogs aren't playing in the snow.")]
    report = T.bleu_report([T.tokenize_en(en) for _, en in pairs], pairs)
    assert report["sacrebleu"] == pytest.approx(100) and report["tokenized_bleu"] == pytest.approx(100)
    assert report["signature"].startswith("nrefs:1|case:lc")


@needs_data
def test_prepare_multi30k_builds_vocabularies_on_train_only():
    data = T.prepare_multi30k(train_size=300, val_size=50, test_size=20)
    assert (len(data.train), len(data.val), len(data.test)) == (300, 50, 20)
    counts = Counter(t for _, en in data.train_pairs for t in T.tokenize_en(en))
    assert set(data.tgt_vocab.itos[4:]) == {t for t, n in counts.items() if n >= 2}
    assert data.test.index == list(range(20))
