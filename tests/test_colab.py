"""The book as a Colab user meets it: bootstrap, profile and run time, where work goes,
the shipped full models, and a twin notebook run outside the repository.

The last test is the Colab session in small: the wheel installed into a fresh
virtual environment (as ``tests/test_wheel.py`` builds it), a chapter's twin from
``notebooks/`` executed (smoke profile) in a kernel of that environment, from an
empty folder with no repository files, its home folder a temporary one, and the
shipped weights served by a local mirror of the repository's files.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import tomllib
import types
import venv
from pathlib import Path

import jupytext
import pytest
import torch
import yaml

from annotated import plumbing as P
from annotated import training as TR

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab_twins  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
T4 = 200 * P.REFERENCE_MATMUL_FLOPS  # about a T4's float16 speed on the probe
H100 = 4000 * P.REFERENCE_MATMUL_FLOPS
GPU, CPU = torch.device("cuda"), torch.device("cpu")


def first_code(path: Path) -> str:
    return next(c for c in jupytext.read(path).cells if c.cell_type == "code").source


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_installs_the_branch_the_colab_link_opens():
    url, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    assert colab_twins.repository(ROOT) == (url, branch)
    for chapter in colab_twins.chapters(ROOT):
        source = first_code(chapter)
        assert source == colab_twins.bootstrap_source(chapter, ROOT), chapter.name
        assert f'SOURCE = "git+{url}@{branch}"' in source
        assert '"pip", "install", "-q", SOURCE]' in source
        assert f'setup_notebook("{chapter.stem}")' in source
        assert 'importlib.metadata.version("annotated-attention-book")' in source
        assert 'find_spec("annotated")' not in source  # any module of that name would do
        twin = json.loads((ROOT / colab_twins.twin_name(chapter)).read_text())
        assert "".join(next(c for c in twin["cells"] if c["cell_type"] == "code")["source"]) == source
    import sphinx_annotated  # the Colab button: the same branch

    app = type("App", (), {})()
    app.config = type("C", (), {"html_theme_options": {
        "repository_url": url, "repository_branch": branch,
        "launch_buttons": {"colab_url": "https://colab.research.google.com"}}})()
    colab = {"type": "link", "text": "Colab", "url": "x"}
    context = {"header_buttons": [{"label": "launch-buttons", "buttons": [colab]}]}
    sphinx_annotated._fix_launch_buttons(app, "book/06_vit", "page.html", context, None)
    assert f"/blob/{branch}/notebooks/06_vit.ipynb" in colab["url"]


def test_a_changed_config_rewrites_every_bootstrap(tmp_path):
    for name in ("_toc.yml", "_config.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "book", tmp_path / "book")
    config = CONFIG | {"repository": {"url": "https://github.com/someone/fork", "branch": "v2"}}
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    stale = colab_twins.sync_bootstraps(tmp_path, write=False)
    assert "stale bootstrap cell in book/06_vit.md" in stale
    assert colab_twins.main(["--check"], root=tmp_path) == 1
    assert colab_twins.main([], root=tmp_path) == 0
    source = first_code(tmp_path / "book/06_vit.md")
    assert 'SOURCE = "git+https://github.com/someone/fork@v2"' in source
    assert colab_twins.main(["--check"], root=tmp_path) == 0
    body = (tmp_path / "book/06_vit.md").read_text()
    assert body.split(source, 1)[1] == (ROOT / "book/06_vit.md").read_text().split(
        first_code(ROOT / "book/06_vit.md"), 1)[1], "only the bootstrap cell changed"


@pytest.fixture
def fresh_env(tmp_path) -> tuple[Path, Path]:
    """A new venv that sees this environment's dependencies (not its `annotated`)."""
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(python), "-I", "-c", ask], capture_output=True, text=True,
                               check=True).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "test-env-dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    return python, site


def _kernel_env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ANNOTATED_") and k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    return env | {"HOME": str(home), "ANNOTATED_DATA": os.environ.get(
        "ANNOTATED_DATA", str(ROOT.parent / "shared" / "data")), "TQDM_DISABLE": "1"} | extra


@pytest.mark.parametrize("unrelated", [False, True], ids=["nothing", "another-annotated"])
def test_bootstrap_failure_is_one_sentence(fresh_env, tmp_path, unrelated):
    """No network, a wrong address: one sentence naming it and what to do, no traceback."""
    python, _ = fresh_env
    source = first_code(ROOT / "book/01_attention.md")
    wrong = (tmp_path / "no-such-repository").as_uri()
    source = source.replace(CONFIG["repository"]["url"], wrong)
    if unrelated:  # a module called annotated that is not this book's package
        (tmp_path / "annotated").mkdir()
        (tmp_path / "annotated" / "__init__.py").write_text("NOT_THE_BOOK = True\n")
    (tmp_path / "bootstrap.py").write_text(source)
    run = subprocess.run([str(python), "bootstrap.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=_kernel_env(tmp_path))
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"Could not install the book's package from git+{wrong}@main: ")
    assert lines[0].endswith("then run this cell again.") and "Traceback" not in run.stderr


# --------------------------------------------------------------------------- mixed precision
@pytest.mark.parametrize("capability, dtype, scaled", [
    ((7, 5), torch.float16, True),  # a T4: bf16 "supported" by emulation only
    ((8, 0), torch.bfloat16, False),  # an A100
    ((9, 0), torch.bfloat16, False),  # an H100
])
def test_mixed_precision_on_each_gpu(monkeypatch, capability, dtype, scaled):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert TR.autocast_dtype(GPU) == dtype
    assert (TR.autocast_dtype(GPU) == torch.float16) is scaled  # fit's GradScaler
    assert TR.autocast_dtype(CPU) is None  # float32 on the CPU
    source = (ROOT / "book/appendix_training.md").read_text()
    assert "enabled=autocast_dtype(device, config.amp) == torch.float16" in source


# --------------------------------------------------------------------------- profile, run time
def test_the_default_profile_on_each_device():
    assert P.default_profile("06_vit", CPU, P.REFERENCE_MATMUL_FLOPS) == "cpu"
    for chapter in ("06_vit", "07_vit_inside"):  # hours of full training on a T4
        assert P.estimate_seconds(chapter, "full", GPU, T4) > 3600
        assert P.default_profile(chapter, GPU, T4) == "cpu"
        assert P.estimate_seconds(chapter, "cpu", GPU, T4) < P.LONG_RUN_S
    for chapter in ("02_translation", "03_seq2seq", "05_transformer"):
        assert P.default_profile(chapter, GPU, T4) == "full"
    assert P.default_profile("06_vit", GPU, H100) == "full"
    for chapter in P.RUN_SECONDS:  # by default nothing on a T4 runs past half an hour
        chosen = P.default_profile(chapter, GPU, T4)
        assert P.estimate_seconds(chapter, chosen, GPU, T4) <= P.LONG_RUN_S, chapter
    assert P.default_profile("no_such_chapter", GPU, T4) == "full"
    assert P.estimate_seconds("no_such_chapter", "cpu", GPU, T4) is None


def test_estimates_scale_the_recorded_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATED_CHECKPOINTS", str(tmp_path))
    ref = P.REFERENCE_MATMUL_FLOPS
    assert P.estimate_seconds("05_transformer", "cpu", CPU, ref) == P.RUN_SECONDS[
        "05_transformer"]["cpu"]
    recorded = P.RUN_SECONDS["05_transformer"]["cpu"]
    # twice the reference speed: half the time; a GPU: only its efficient share counts
    assert P.estimate_seconds("05_transformer", "cpu", CPU, 2 * ref) == pytest.approx(
        recorded / 2)
    assert P.estimate_seconds("05_transformer", "cpu", GPU, ref) == pytest.approx(
        recorded / P.GPU_EFFICIENCY)
    inside = P.estimate_seconds("07_vit_inside", "cpu", CPU, ref)
    assert inside == P.RUN_SECONDS["07_vit_inside"]["cpu"] + P.RUN_SECONDS["06_vit"]["cpu"]
    for name in ("vit_cifar10", "cnn_cifar10"):  # chapter 6's models are here: no retraining
        (tmp_path / f"{name}.cpu.pt").write_bytes(b"")
    assert P.estimate_seconds("07_vit_inside", "cpu", CPU, ref) == P.RUN_SECONDS[
        "07_vit_inside"]["cpu"]


def test_recorded_run_times_are_at_least_the_recorded_training():
    """The table cannot claim a chapter is quicker than the part its results recorded."""
    for path in sorted((ROOT / "results").glob("*.json")):
        chapter, profile = path.stem.rsplit(".", 1)
        if chapter not in P.RUN_SECONDS:
            continue
        recorded = json.loads(path.read_text())["wall_time_s"]
        assert P.RUN_SECONDS[chapter][profile] >= recorded, path.name
    assert set(P.RUN_SECONDS) == {c.stem for c in colab_twins.chapters(ROOT)}


def _pretend_gpu(monkeypatch, speed: float) -> None:
    monkeypatch.setattr(P, "get_device", lambda prefer=None: GPU)
    monkeypatch.setattr(P, "device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(P, "matmul_speed", lambda device, repeats=5: speed)


def test_setup_notebook_on_a_pretend_t4_chooses_and_says_why(monkeypatch, capsys):
    _pretend_gpu(monkeypatch, T4)
    monkeypatch.delenv("ANNOTATED_PROFILE")
    assert P.setup_notebook("06_vit") == "cpu" == os.environ["ANNOTATED_PROFILE"]
    out = capsys.readouterr().out
    assert out.startswith("profile: cpu | device: Tesla T4\n")
    assert re.search(r"this chapter \(06_vit\) in the cpu profile: about \d+ s on this device", out)
    assert re.search(r"chosen because the full profile would take about [\d.]+ h here", out)
    assert "%env ANNOTATED_PROFILE=full" in out and "WARNING" not in out
    assert "work goes to:\n  checkpoints " + os.environ["ANNOTATED_CHECKPOINTS"] in out


def test_an_explicit_long_run_is_announced_before_it_starts(monkeypatch, capsys):
    _pretend_gpu(monkeypatch, T4)
    monkeypatch.setenv("ANNOTATED_PROFILE", "full")
    assert P.setup_notebook("06_vit") == "full"
    out = capsys.readouterr().out
    warning = re.search(r"WARNING: a long run, about ([\d.]+) h; it checkpoints every epoch", out)
    assert warning and 1 < float(warning.group(1)) < 5, out
    assert out.index("WARNING") < out.index("work goes to:")
    monkeypatch.setenv("ANNOTATED_PROFILE", "smoke")
    P.setup_notebook("06_vit")
    assert "WARNING" not in capsys.readouterr().out


# --------------------------------------------------------------------------- where work goes
@pytest.fixture
def no_folders(monkeypatch, tmp_path):
    """No folder settings, a pretend home, the cwd in an empty folder."""
    for var in ("ANNOTATED_HOME", *P.FOLDERS.values()):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def test_another_jupyter_book_is_not_this_repository(no_folders):
    other = no_folders / "work" / "my-book"
    (other / "chapters").mkdir(parents=True)
    (other / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (other / "pyproject.toml").write_text('[project]\nname = "my-book"\n')
    os.chdir(other / "chapters")
    assert P.repo_root() is None
    home = no_folders / "home" / "annotated-attention-book"
    assert P.work_home() == home
    assert P.results_dir() == home / "results" and P.checkpoint_dir() == home / "checkpoints"
    assert P.weights_dir() == home / "weights"
    assert P.repo_root(ROOT / "book") == ROOT  # the repository: by its pyproject.toml


def test_outside_the_repository_results_record_the_package_version(no_folders):
    import annotated

    assert P.git_commit() == f"annotated-attention-book {annotated.__version__}"
    path = P.save_results("01_attention", {"x": 1.0}, profile="smoke")
    assert path == no_folders / "home" / "annotated-attention-book" / "results" / \
        "01_attention.smoke.json"
    assert json.loads(path.read_text())["commit"] == f"annotated-attention-book {annotated.__version__}"
    assert not any((no_folders / "work").iterdir()), "nothing written into the cwd"


def test_annotated_home_moves_all_work_and_colab_is_told(no_folders, monkeypatch):
    drive = no_folders / "drive" / "MyDrive"
    drive.mkdir(parents=True)
    monkeypatch.setenv("ANNOTATED_HOME", str(drive / "book"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    text = P.where_work_goes()
    for name in ("checkpoints", "results", "weights"):
        assert f"  {name:<12}{drive / 'book' / name}" in text
        assert (drive / "book" / name).is_dir()
    assert "lost when the session ends" not in text  # it is on the drive
    monkeypatch.delenv("ANNOTATED_HOME")
    assert "lost when the session ends: to keep the work, mount Google Drive" in \
        P.where_work_goes()


def test_training_resumes_from_the_drive_in_a_new_runtime(no_folders, monkeypatch):
    """Two "runtimes" (fresh models), one ANNOTATED_HOME: the second resumes."""
    drive = no_folders / "drive"
    drive.mkdir()
    monkeypatch.setenv("ANNOTATED_HOME", str(drive / "book"))

    def session(stop_after: int | None) -> dict:  # everything fresh, as in a new runtime
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        x, y = torch.randn(8, 3), torch.randn(8, 1)

        def step(m, batch):
            loss = torch.nn.functional.mse_loss(m(batch[0]), batch[1])
            return loss, loss.item() * len(batch[0]), len(batch[0])
        return TR.fit(model, step, [(x, y)], optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                      checkpoint=P.checkpoint_dir() / "lin.pt",
                      config=TR.TrainConfig(epochs=4, patience=None, stop_after=stop_after,
                                            verbose=False))

    first = session(2)  # the runtime ends after two epochs
    assert first["interrupted"] and (drive / "book" / "checkpoints" / "lin.pt").exists()
    second = session(None)
    assert second["epoch"] == [1, 2, 3, 4] and second["finished"]
    assert second["train_loss"][:2] == first["train_loss"]
    monkeypatch.setenv("ANNOTATED_HOME", str(drive / "elsewhere"))
    assert session(None)["train_loss"] == second["train_loss"], "resumed == in one go"


@pytest.mark.parametrize("case", ["not-mounted", "a-file"])
def test_an_unwritable_drive_folder_is_one_sentence(no_folders, monkeypatch, case):
    if case == "a-file":
        (no_folders / "drive").write_text("not a folder")
        home = no_folders / "drive" / "book"
    else:
        home = no_folders / "drive" / "MyDrive" / "book"  # /content/drive not mounted
    monkeypatch.setenv("ANNOTATED_HOME", str(home))
    with pytest.raises(PermissionError) as info:
        P.setup_notebook("01_attention")
    message = str(info.value)
    assert message.startswith(f"{home / 'checkpoints'} (from ANNOTATED_HOME) cannot be written (")
    assert message.endswith("then run this cell again") and message.count(". ") == 0
    assert not (no_folders / "drive" / "MyDrive").exists(), "nothing created on the local disk"


# --------------------------------------------------------------------------- shipped files
def test_the_shipped_table_matches_the_repository_files():
    for chapter, files in P.SHIPPED.items():
        for path, sha256 in files.items():
            digest = hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
            assert digest == sha256, f"{path} changed: update SHIPPED[{chapter!r}] in the plumbing appendix"
    import annotated

    assert annotated.__repository__ == CONFIG["repository"]["url"]
    assert annotated.__branch__ == CONFIG["repository"]["branch"]
    assert P.shipped_url("weights/x.pt") == (
        "https://raw.githubusercontent.com/annotated-attention/annotated-attention-book/main/weights/x.pt")


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP copy of the repository's shipped files (and a corrupt variant)."""
    root = tmp_path / "mirror"
    for path in {p for files in P.SHIPPED.values() for p in files}:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, root / path)
        (root / "corrupt" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "corrupt" / path).write_bytes((ROOT / path).read_bytes()[:-7])
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_shipped_files_arrive_from_a_mirror_and_not_twice(no_folders, monkeypatch, mirror):
    monkeypatch.setenv("ANNOTATED_SHIPPED_URL", mirror)
    lines = P.fetch_shipped("03_seq2seq")
    home = no_folders / "home" / "annotated-attention-book"
    assert lines == [f"fetched weights/03_lstm+attn.full.int8.pt into {home / 'weights'}",
                     f"fetched results/03_seq2seq.full.json into {home / 'results'}"]
    shipped = home / "weights" / "03_lstm+attn.full.int8.pt"
    assert P.sha256_file(shipped) == P.SHIPPED["03_seq2seq"]["weights/03_lstm+attn.full.int8.pt"]
    assert P.load_results("03_seq2seq", "full")["profile"] == "full"
    monkeypatch.setenv("ANNOTATED_SHIPPED_URL", "http://127.0.0.1:9")
    assert P.fetch_shipped("03_seq2seq") == []  # here already: nothing fetched
    assert P.fetch_shipped("01_attention") == []  # ships nothing


def test_shipped_files_offline_and_corrupt_are_one_sentence_each(no_folders, monkeypatch, mirror):
    monkeypatch.setenv("ANNOTATED_SHIPPED_URL", "http://127.0.0.1:9")
    (offline,) = P.fetch_shipped("05_transformer")
    assert offline.startswith("offline: the full run's 05_transformer.full.int8.pt, "
                              "05_transformer.full.json, 03_seq2seq.full.json, "
                              "05_transformer_recipe.cpu.json could not be fetched from "
                              "http://127.0.0.1:9/ (")
    assert offline.endswith("the chapter runs without them, and the rendered book shows what they hold")
    monkeypatch.setenv("ANNOTATED_SHIPPED_URL", f"{mirror}/corrupt")
    lines = P.fetch_shipped("03_seq2seq")
    assert len(lines) == 2 and all("is corrupt: SHA-256" in line and "nothing was kept" in line
                                   for line in lines)
    home = no_folders / "home" / "annotated-attention-book"
    assert [p.name for p in home.rglob("*") if p.is_file()] == [], "nothing half-written"


# --------------------------------------------------------------------------- Python version
def test_requires_python_is_what_the_code_and_lint_assume():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["tool"]["ruff"]["target-version"] == "py311"
    assert "per-file-target-version" not in project["tool"]["ruff"]
    assert sys.version_info >= (3, 11)


# --------------------------------------------------------------------------- a Colab session
RUNNER = r"""
import json, sys
import nbformat
from nbclient import NotebookClient

nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(
    "import os, sys, annotated\n"
    "print('annotated from', os.path.dirname(os.path.dirname(annotated.__file__)))\n"
    "print('python', os.path.dirname(sys.executable))"))
NotebookClient(nb, timeout=900, kernel_name="python3",
               resources={"metadata": {"path": sys.argv[2]}}).execute()
out = ["".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code"
       for o in c.outputs if o.get("output_type") == "stream"]
print(json.dumps(out))
"""


def test_a_twin_notebook_runs_outside_the_repository(fresh_env, tmp_path, mirror):
    from test_wheel import _copy_sources

    python, site = fresh_env
    (tmp_path / "src").mkdir()
    src, wheel_dir = _copy_sources(tmp_path / "src"), tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
             "-q", "-w", str(wheel_dir), str(src)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
               "--no-index", *map(str, wheel_dir.glob("*.whl"))]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    work, home = tmp_path / "content", tmp_path / "root"
    work.mkdir()
    home.mkdir()
    shutil.copy(ROOT / "notebooks" / "03_seq2seq.ipynb", work / "03_seq2seq.ipynb")
    (work / "run.py").write_text(RUNNER)
    env = _kernel_env(home, ANNOTATED_PROFILE="smoke", ANNOTATED_SHIPPED_URL=mirror)
    run = subprocess.run([str(python), "run.py", "03_seq2seq.ipynb", str(work)], cwd=work,
                         capture_output=True, text=True, timeout=1200, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    printed = "".join(json.loads(run.stdout.strip().splitlines()[-1]))
    assert f"annotated from {site}" in printed and f"python {python.parent}" in printed
    book = home / "annotated-attention-book"
    assert "profile: smoke | device: cpu" in printed
    assert f"work goes to:\n  checkpoints {book / 'checkpoints'}" in printed
    assert f"fetched weights/03_lstm+attn.full.int8.pt into {book / 'weights'}" in printed
    shipped = book / "weights" / "03_lstm+attn.full.int8.pt"
    assert P.sha256_file(shipped) == P.SHIPPED["03_seq2seq"]["weights/03_lstm+attn.full.int8.pt"]
    record = json.loads((book / "results" / "03_seq2seq.smoke.json").read_text())
    import annotated

    assert record["commit"] == f"annotated-attention-book {annotated.__version__}"
    left = sorted(p.name for p in work.iterdir())
    assert left == ["03_seq2seq.ipynb", "run.py"], f"written next to the notebook: {left}"
