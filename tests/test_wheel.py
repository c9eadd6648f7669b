"""The package as a user gets it: a wheel, installed in a fresh venv outside the repo.

The wheel is built from a copy of only what a source distribution holds
(``pyproject.toml``, ``README.md``, ``annotated/``) and installed with pip into a
new virtual environment under a temporary folder. Torch and the other
dependencies are far too big to install again, so the new environment sees this
environment's site-packages through a ``.pth`` line; a plain path in a ``.pth``
file does not run the ``.pth`` files inside it, so this repository's editable
install (a ``.pth`` import hook) stays invisible. The script runs isolated
(``python -I``: no ``PYTHONPATH``, no user site) from an empty folder, checks that
``annotated`` comes from the fresh environment, imports every module and trains
one optimizer step.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = "annotated-attention-book"

SCRIPT = """
import importlib, importlib.metadata, json, sys
from pathlib import Path

env, repo = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
import annotated

where = Path(annotated.__file__).resolve()
assert where.is_relative_to(env), f"annotated imported from {where}, not from {env}"
assert not any(Path(p or ".").resolve() == repo for p in sys.path), sys.path
modules = [importlib.import_module(f"annotated.{name}") for name in annotated.__all__]
assert all(Path(m.__file__).resolve().is_relative_to(env) for m in modules)

import torch
from annotated.attention import MultiHeadAttention

torch.manual_seed(0)
mha = MultiHeadAttention(d_model=16, n_heads=4)
x, target = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
optimizer = torch.optim.SGD(mha.parameters(), lr=0.1)
losses = []
for _ in range(2):  # one step, then the loss after it
    loss = torch.nn.functional.mse_loss(mha(x, x, x), target)
    losses.append(loss.item())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

# and the book's own loop: two epochs of one step each, with a checkpoint written outside
from annotated.training import TrainConfig, fit  # noqa: E402


def step(model, batch):
    loss = torch.nn.functional.mse_loss(model(*batch[:3]), batch[3])
    return loss, loss.item(), 1


ckpt = Path(sys.argv[3]) / "mha.pt"
history = fit(mha, step, [(x, x, x, target)], optimizer=optimizer, checkpoint=ckpt,
              config=TrainConfig(epochs=2, patience=None, verbose=False))
assert history["finished"] and ckpt.exists() and len(history["step_loss"]) == 2
assert history["step_loss"][-1] < losses[0]
print(json.dumps({
    "file": str(where), "modules": [m.__name__ for m in modules], "losses": losses,
    "version": annotated.__version__,
    "dist_version": importlib.metadata.version("annotated-attention-book"),
}))
"""


def _copy_sources(dst: Path) -> Path:
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dst / name)
    shutil.copytree(ROOT / "annotated", dst / "annotated",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built without network from a copy of the package's sources."""
    src = _copy_sources(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index",
               "--no-build-isolation", "-q", "-w", str(out), str(src)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_the_package_only(wheel: Path):
    assert wheel.name.startswith(DIST.replace("-", "_") + "-")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert "annotated" in top, top
    assert all(t == "annotated" or t.endswith(".dist-info") for t in top), top
    modules = {Path(n).stem for n in names if n.startswith("annotated/")}
    on_disk = {p.stem for p in (ROOT / "annotated").glob("*.py")}
    assert modules == on_disk
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    meta = zipfile.ZipFile(wheel).read(metadata).decode()
    assert f"Name: {DIST}\n" in meta and "License-Expression: MIT\n" in meta


def test_installed_wheel_imports_and_trains_outside_the_repository(wheel, tmp_path):
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    run = subprocess.run([str(python), "-I", "-c", ask], capture_output=True, text=True,
                         check=True)
    site = Path(run.stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "test-env-dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
               "--no-deps", "--no-index", str(wheel)]
    run = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    work = tmp_path / "user"
    work.mkdir()
    (work / "use_it.py").write_text(SCRIPT)
    command = [str(python), "-I", "use_it.py", str(env), str(ROOT), str(work)]
    run = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).is_relative_to(env.resolve())
    modules = {f"annotated.{p.stem}" for p in (ROOT / "annotated").glob("*.py")}
    assert set(report["modules"]) == modules - {"annotated.__init__"}
    before, after = report["losses"]
    assert after < before, report["losses"]
    assert report["version"] == report["dist_version"]
