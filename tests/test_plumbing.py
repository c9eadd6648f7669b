"""Plumbing: profiles, the verified atomic downloader (over real HTTP), results, checkpoints."""

import functools
import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest
import torch

from annotated import plumbing as P

PAYLOAD = b"ein Hund rennt durch das Gras\n" * 1000
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


# --- profiles ---------------------------------------------------------------------------

def test_profile_default_env_and_argument(monkeypatch):
    monkeypatch.delenv("ANNOTATED_PROFILE", raising=False)
    assert P.get_profile() == "cpu"
    monkeypatch.setenv("ANNOTATED_PROFILE", " Smoke ")
    assert P.get_profile() == "smoke"
    assert P.get_profile("full") == "full"
    assert P.by_profile(smoke=1, cpu=2, full=3) == 1
    assert P.by_profile(smoke=1, cpu=2, full=3, profile="full") == 3


@pytest.mark.parametrize("bad", ["ful", "gpu", ""])
def test_unknown_profile_names_the_valid_ones(monkeypatch, bad):
    monkeypatch.setenv("ANNOTATED_PROFILE", bad)
    with pytest.raises(ValueError, match=r"unknown profile .*valid profiles are: smoke, cpu, full"):
        P.get_profile()


def test_setup_notebook_keeps_an_explicit_profile(monkeypatch, capsys):
    monkeypatch.setenv("ANNOTATED_PROFILE", "smoke")
    assert P.setup_notebook() == "smoke"
    assert "profile: smoke" in capsys.readouterr().out


def test_seed_everything_reproduces():
    a = torch.rand(4, generator=P.seed_everything(7)), torch.rand(2)
    b = torch.rand(4, generator=P.seed_everything(7)), torch.rand(2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert P.get_device().type in {"cpu", "cuda"}


def test_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ANNOTATED_DATA", str(tmp_path))
    assert P.data_dir() == tmp_path
    monkeypatch.delenv("ANNOTATED_DATA")
    assert P.data_dir().name == "annotated"


# --- downloader -------------------------------------------------------------------------

class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        if self.path == "/truncated.bin":  # promises more bytes than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:100])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "data.bin").write_bytes(PAYLOAD)
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("ANNOTATED_DATA", str(folder))
    return folder


def test_fetch_downloads_verifies_and_reuses(server, cache):
    path = P.fetch(f"{server}/data.bin", DIGEST, "demo")
    assert path == cache / "demo" / "data.bin" and path.read_bytes() == PAYLOAD
    # A second call must not download again: it works with the server gone.
    assert P.fetch("http://127.0.0.1:9/data.bin", DIGEST, "demo") == path


def test_fetch_refuses_checksum_mismatch_and_leaves_nothing(server, cache):
    with pytest.raises(P.ChecksumError, match=rf"data.bin .*SHA-256 {DIGEST}, expected 0{{64}}"):
        P.fetch(f"{server}/data.bin", "0" * 64, "demo")
    assert list((cache / "demo").iterdir()) == []


def test_fetch_is_atomic_when_the_connection_breaks(server, cache):
    with pytest.raises(P.DataUnavailableError, match="truncated.bin"):
        P.fetch(f"{server}/truncated.bin", DIGEST, "demo")
    assert list((cache / "demo").iterdir()) == [], "no partial file, under any name"


def test_fetch_offline_error_is_one_clear_sentence(cache):
    with pytest.raises(P.DataUnavailableError) as info:
        P.fetch("http://127.0.0.1:9/train.de.gz", DIGEST, "multi30k")
    message = str(info.value)
    assert "train.de.gz is not in" in message and "download it by hand to" in message
    assert str(cache / "multi30k" / "train.de.gz") in message and "ANNOTATED_DATA" in message


def test_fetch_refuses_a_corrupt_local_copy(cache, tmp_path):
    (cache / "demo").mkdir(parents=True)
    (cache / "demo" / "data.bin").write_bytes(PAYLOAD[:-1])
    with pytest.raises(P.ChecksumError, match=r"data.bin \(found at .*\) is corrupt"):
        P.fetch((tmp_path / "nowhere" / "data.bin").as_uri(), DIGEST, "demo")


def test_fetch_over_file_url(cache, tmp_path):
    src = tmp_path / "data.bin"
    src.write_bytes(PAYLOAD)
    assert P.fetch(src.as_uri(), DIGEST, "demo").read_bytes() == PAYLOAD


# --- results and checkpoints --------------------------------------------------------------

def test_save_results_writes_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATED_RESULTS", str(tmp_path))
    path = P.save_results("01_attention", {"bleu": torch.tensor(31.5)}, {"lr": 1e-3}, 12.345,
                          profile="cpu")
    record = json.loads(path.read_text())
    assert path.name == "01_attention.cpu.json"
    assert record["metrics"] == {"bleu": 31.5} and record["settings"] == {"lr": 0.001}
    assert record["wall_time_s"] == 12.35 and record["profile"] == "cpu"
    assert {"commit", "device", "date", "torch"} <= set(record)
    with pytest.raises(ValueError, match="no metrics"):
        P.save_results("x", {}, profile="cpu")
    with pytest.raises(TypeError, match="profile"):  # the caller says which profile ran
        P.save_results("01_attention", {"bleu": 1.0})
    assert P.load_results("01_attention", "cpu")["metrics"] == {"bleu": 31.5}
    assert P.load_results("01_attention", "full") is None
    (tmp_path / "02_translation.cpu.json").write_text("{cut off")
    with pytest.raises(ValueError, match=r"02_translation.cpu.json is not a results file"):
        P.load_results("02_translation", "cpu")


def test_a_false_claim_fails_cpu_and_full_naming_it_and_warns_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATED_RESULTS", str(tmp_path))
    monkeypatch.delenv("ANNOTATED_CLAIMS", raising=False)
    for profile in ("cpu", "full"):
        with pytest.raises(P.ClaimError, match=r"LSTM beats the RNN.*LSTM 1.0 < RNN 2.0"):
            P.check_claim("03_test", "LSTM beats the RNN", 1.0 > 2.0, "LSTM 1.0 < RNN 2.0",
                          profile=profile)
        failed = json.loads(P.claims_path("03_test", profile).read_text())["claims"]
        assert failed == [{"claim": "LSTM beats the RNN", "holds": False, "enforced": True,
                           "evidence": "LSTM 1.0 < RNN 2.0", "source": "this run"}]
    assert P.check_claim("03_test", "x", False, "0 < 1", profile="smoke") is False  # reported
    monkeypatch.setenv("ANNOTATED_CLAIMS", "warn")
    assert P.check_claim("03_test", "LSTM beats the RNN", False, "1 < 2", profile="cpu") is False
    monkeypatch.setenv("ANNOTATED_CLAIMS", "sometimes")
    with pytest.raises(ValueError, match="ANNOTATED_CLAIMS"):
        P.check_claim("03_test", "y", True, "1", profile="cpu")
    monkeypatch.delenv("ANNOTATED_CLAIMS")
    with pytest.raises(ValueError, match="numbers it rests on"):
        P.check_claim("03_test", "y", True, " ", profile="cpu")


def test_claims_ledger_records_verdicts_and_evidence(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANNOTATED_RESULTS", str(tmp_path))
    monkeypatch.setenv("ANNOTATED_CLAIMS", "warn")
    assert P.check_claim("03_ledger", "a holds", 3 > 2, "3 > 2", profile="cpu") is True
    P.check_claim("03_ledger", "b fails", 1 > 2, "1 < 2", profile="cpu", source="results/x.json")
    P.check_claim("03_ledger", "a holds", 3 > 2, "3 > 2 again", profile="cpu")  # re-checked
    out = capsys.readouterr().out
    assert "✓ holds in this run (cpu profile): a holds — 3 > 2" in out
    assert "✗ DOES NOT HOLD in results/x.json (cpu profile): b fails" in out
    record = json.loads(P.claims_path("03_ledger", "cpu").read_text())
    assert record["chapter"] == "03_ledger" and record["profile"] == "cpu"
    assert [(c["claim"], c["holds"], c["evidence"]) for c in record["claims"]] == [
        ("a holds", True, "3 > 2 again"), ("b fails", False, "1 < 2")]
    assert record["claims"][1]["source"] == "results/x.json"
    assert not record["claims"][1]["enforced"]


def test_under_torchrun_only_rank_0_writes_results_and_each_rank_has_its_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATED_RESULTS", str(tmp_path))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert P.distributed_env() == P.DistEnv(rank=1, local_rank=1, world_size=2)
    path = P.save_results("01_attention", {"bleu": 1.0}, profile="cpu")
    assert path == tmp_path / "01_attention.cpu.json" and not path.exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert P.get_device() == torch.device("cuda", 1)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert P.save_results("01_attention", {"bleu": 1.0}, profile="cpu").exists()
    assert P.get_device() == torch.device("cpu")


def test_git_commit_is_dirty_for_code_changes_but_not_for_results(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "01.cpu.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = P.git_commit(tmp_path)
    assert len(clean) == 12 and "+" not in clean
    (tmp_path / "results" / "01.cpu.json").write_text('{"a": 1}')  # an earlier chapter of the build wrote it
    assert P.git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert P.git_commit(tmp_path) == clean + "+dirty"


def test_results_dir_finds_repo(monkeypatch, repo_root):
    monkeypatch.delenv("ANNOTATED_RESULTS", raising=False)
    monkeypatch.chdir(repo_root / "book")
    assert P.results_dir() == repo_root / "results"


def test_checkpoint_round_trip_and_refusals(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = P.save_checkpoint(tmp_path / "m.pt", net, {"d": 3}, opt, epoch=5)
    net2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(net2.parameters())
    assert P.load_checkpoint(path, net2, {"d": 3}, opt2) == {"epoch": 5}
    assert torch.equal(net.weight, net2.weight)
    assert opt2.state_dict()["state"][0]["step"] == 1
    with pytest.raises(P.CheckpointError, match=r"saved with other settings \(d: saved 3, wanted 4\)"):
        P.load_checkpoint(path, net2, {"d": 4})
    (tmp_path / "bad.pt").write_bytes(path.read_bytes()[:50])
    with pytest.raises(P.CheckpointError, match="bad.pt is not a readable checkpoint"):
        P.load_checkpoint(tmp_path / "bad.pt", net2, {"d": 3})
    assert not list(tmp_path.glob("*.part"))



_loaded: list[str] = []


def _run_on_load(note: str) -> None:
    _loaded.append(note)


class _RunsCodeOnLoad:
    """Unpickling this calls _run_on_load: what a malicious checkpoint could do."""

    def __reduce__(self):
        return (_run_on_load, ("code ran",))


def test_checkpoints_load_weights_only_and_refuse_a_payload_with_code(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    seen = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k) or real_load(*a, **k))
    rng = torch.get_rng_state()
    path = P.save_checkpoint(tmp_path / "m.pt", net, {"d": 3}, epoch=5,
                             rng=[{"torch": rng, "cuda": None}],
                             history={"epoch": [1, 2], "val_loss": [2.5, float("nan")]})
    state = P.load_checkpoint(path, torch.nn.Linear(3, 2), {"d": 3})
    assert state["history"]["epoch"] == [1, 2] and torch.equal(state["rng"][0]["torch"], rng)
    assert seen and all(k.get("weights_only") is True for k in seen)
    torch.save({"config": {"d": 3}, "model": net.state_dict(), "state": {"x": _RunsCodeOnLoad()},
                "optimizer": None}, tmp_path / "evil.pt")
    with pytest.raises(P.CheckpointError, match=r"evil.pt holds more than tensors and plain"):
        P.load_checkpoint(tmp_path / "evil.pt", torch.nn.Linear(3, 2), {"d": 3})
    assert _loaded == []  # refused before anything ran
    assert real_load(tmp_path / "evil.pt", weights_only=False) and _loaded == ["code ran"]

# --- compact (8-bit) weights ------------------------------------------------------------

def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 32), torch.nn.LayerNorm(32),
                               torch.nn.Linear(32, 50))


def test_compact_weights_within_half_a_step_and_a_quarter_of_the_size(tmp_path):
    torch.manual_seed(0)
    net = _mlp()
    with torch.no_grad():
        net[1].weight[3] *= 100  # one row with a far larger range must not cost the others precision
    path = P.save_compact(tmp_path / "w.pt", net, {"v": 50})
    back = P.load_compact(path, _mlp(), {"v": 50})
    for (name, w), w_hat in zip(net.state_dict().items(), back.state_dict().values()):
        if w.dim() >= 2:  # independent reference: round-to-nearest on each row's own grid
            step = w.abs().amax(1, keepdim=True) / 127
            assert (w - w_hat).abs().le(step / 2 + 1e-7).all(), name
            assert (w - w_hat).abs().max() > 0  # it really is quantised
        else:
            assert torch.equal(w, w_hat), name  # vectors are kept exactly
    other_rows = torch.cat([net[1].weight[:3], net[1].weight[4:]])
    error = (net[1].weight - back[1].weight)[torch.arange(32) != 3].abs().max()
    assert error <= other_rows.abs().max() / 254 + 1e-7
    big = torch.nn.Linear(512, 512)
    big_path = P.save_compact(tmp_path / "big.pt", big, {})
    assert big_path.stat().st_size < 0.3 * 512 * 513 * 4  # about a quarter (plus scales and zip overhead)
    assert not list(tmp_path.glob("*.part"))


def test_compact_weights_refuse_other_configs_corrupt_files_and_checkpoints(tmp_path):
    net = _mlp()
    path = P.save_compact(tmp_path / "w.pt", net, {"vocab": "abc", "d": 16})
    with pytest.raises(P.CheckpointError,
                       match=r"saved with other settings \(vocab: saved 'abc', wanted 'abd'\)"):
        P.load_compact(path, _mlp(), {"vocab": "abd", "d": 16})
    (tmp_path / "bad.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(P.CheckpointError, match="bad.pt is not a readable weights file"):
        P.load_compact(tmp_path / "bad.pt", _mlp(), {"vocab": "abc", "d": 16})
    ckpt = P.save_checkpoint(tmp_path / "ckpt.pt", net, {"d": 16})  # a training checkpoint is not this format
    with pytest.raises(P.CheckpointError, match="ckpt.pt is not a readable weights file|ckpt.pt has format"):
        P.load_compact(ckpt, _mlp(), {"d": 16})
    with pytest.raises(FileNotFoundError):
        P.load_compact(tmp_path / "missing.pt", _mlp(), {})


ROOT = Path(__file__).resolve().parents[1]  # the repository's own files, not a test's temporary dirs


@pytest.fixture(scope="module")
def full_multi30k():
    from annotated.translation import prepare_multi30k
    return prepare_multi30k()  # the complete Multi30k, as the full and cpu profiles use it


def _shipped(name: str, chapter: str) -> tuple[Path, dict, dict]:
    """The shipped weights file of a chapter's full run, its stored config and the run's record."""
    path = ROOT / "weights" / name
    if not path.exists():
        pytest.skip(f"no weights/{name}")
    record = json.loads((ROOT / "results" / f"{chapter}.full.json").read_text())
    return path, torch.load(path, map_location="cpu", weights_only=True)["config"], record


def _test_ppl(model, data) -> float:
    from annotated.translation import evaluate, make_loader
    return evaluate(model.eval(), make_loader(data.test, 4000, shuffle=False))["ppl"]


def test_shipped_transformer_weights_load_and_reproduce_their_record(full_multi30k):
    """weights/05_transformer.full.int8.pt fits the full data and its recorded run, and scores like it."""
    from dataclasses import asdict

    from annotated.training import weights_settings
    from annotated.transformer import Transformer, TransformerConfig
    path, saved, record = _shipped("05_transformer.full.int8.pt", "05_transformer")
    settings = record["settings"]["model"]
    assert {k: saved["model"][k] for k in settings} == settings  # the weights are the recorded run's model
    data = full_multi30k
    cfg = TransformerConfig(len(data.src_vocab), len(data.tgt_vocab), **settings,
                            norm_first=False, tie_embeddings=False)
    assert saved["model"] == asdict(cfg)
    config = weights_settings(asdict(cfg), src_vocab=data.src_vocab, tgt_vocab=data.tgt_vocab)
    model = P.load_compact(path, Transformer(cfg), config)
    recorded = record["metrics"]["perplexity"]["Transformer"]["test_tf"]
    assert _test_ppl(model, data) == pytest.approx(recorded, rel=0.02)  # 8-bit rows move it a little
    assert path.stat().st_size <= 20 * 10**6


def test_shipped_seq2seq_weights_load_and_reproduce_their_record(full_multi30k):
    """weights/03_lstm+attn.full.int8.pt fits the full data and chapter 3's run, and scores like it."""
    from dataclasses import asdict

    from annotated.seq2seq import Seq2Seq, Seq2SeqConfig
    from annotated.training import weights_settings
    path, saved, record = _shipped("03_lstm+attn.full.int8.pt", "03_seq2seq")
    data, st = full_multi30k, record["settings"]
    cfg = Seq2SeqConfig(len(data.src_vocab), len(data.tgt_vocab), cell="lstm", attention=st["attention"],
                        **st["dims"])
    assert saved["model"] == asdict(cfg)
    model = P.load_compact(path, Seq2Seq(cfg), weights_settings(asdict(cfg), src_vocab=data.src_vocab,
                                                              tgt_vocab=data.tgt_vocab))
    recorded = record["metrics"]["lstm+attn"]["test_ppl_TF"]
    assert _test_ppl(model, data) == pytest.approx(recorded, rel=0.02)
    assert path.stat().st_size <= 20 * 10**6


def _small_seq2seq():
    from annotated.seq2seq import Seq2Seq, Seq2SeqConfig

    torch.manual_seed(0)
    return Seq2Seq(Seq2SeqConfig(20, 20, cell="rnn", attention="cosine", emb_dim=8, hidden_dim=8))


def test_load_model_rebuilds_the_model_from_either_file_alone(tmp_path):
    model = _small_seq2seq().eval()
    P.save_checkpoint(tmp_path / "m.pt", model, {"whatever": 1}, finished=True)
    P.save_compact(tmp_path / "m.int8.pt", model, {"whatever": 1})
    src, tgt = torch.randint(4, 20, (2, 5)), torch.randint(4, 20, (2, 3))
    exact = P.load_model(tmp_path / "m.pt")
    assert type(exact) is type(model) and exact.cfg == model.cfg and not exact.training
    assert torch.equal(exact(src, tgt), model(src, tgt))
    small = P.load_model(tmp_path / "m.int8.pt")
    assert small.cfg == model.cfg and (small(src, tgt) - model(src, tgt)).abs().max() < 0.05


def test_load_model_refuses_what_it_cannot_build_and_says_so(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no checkpoint or weights file at .*none.pt"):
        P.load_model(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(P.CheckpointError, match="not a readable checkpoint or weights file"):
        P.load_model(tmp_path / "bad.pt")
    (tmp_path / "vocab.json").write_text(json.dumps({"itos": ["<unk>"] * 500}))
    with pytest.raises(P.CheckpointError) as refused:  # a file of another kind: one line
        P.load_model(tmp_path / "vocab.json")
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 400, str(refused.value)
    P.save_checkpoint(tmp_path / "linear.pt", torch.nn.Linear(2, 2), {})  # no builder: not ours
    with pytest.raises(P.CheckpointError, match="does not name its model"):
        P.load_model(tmp_path / "linear.pt")
    model = _small_seq2seq()
    for cls, why in (("os.system", "not a class of this package"),
                     ("annotated.seq2seq.NoSuchModel", "does not have")):
        payload = {"config": {}, "model": model.state_dict(), "state": {},
                   "builder": P.model_builder(model) | {"class": cls}}
        torch.save(payload, tmp_path / "odd.pt")
        with pytest.raises(P.CheckpointError, match=why):
            P.load_model(tmp_path / "odd.pt")
    P.save_checkpoint(tmp_path / "half.pt", model, {}, history={"epoch": [1, 2]})  # not finished
    P.load_model(tmp_path / "half.pt")
    assert "half.pt: an unfinished run (after epoch 2), loaded as it stands" in capsys.readouterr().out


def test_the_shipped_weights_name_their_model():
    from annotated.training import load_shipped

    for name, cls in (("03_lstm+attn.full.int8.pt", "Seq2Seq"),
                      ("05_transformer.full.int8.pt", "Transformer")):
        model = load_shipped(ROOT / "weights" / name)
        assert type(model).__name__ == cls and not model.training
    with pytest.raises(FileNotFoundError, match="no weights file at"):
        load_shipped(ROOT / "weights" / "nothing.int8.pt")
