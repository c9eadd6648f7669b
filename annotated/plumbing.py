# GENERATED FILE, DO NOT EDIT. It is exported from book/appendix_plumbing.md
# by tools/export.py; change the chapter and run `make export` instead.
"""Appendix: the plumbing every chapter shares (from book/appendix_plumbing.md)."""


# %% book/appendix_plumbing.md, code cell 3
# (Appendix: the plumbing every chapter shares)
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from collections.abc import Iterator
from typing import Any, TypeVar

import numpy as np
import torch

import annotated

T = TypeVar("T")
DIST = "annotated-attention-book"  # the distribution's name (pyproject.toml)


# %% book/appendix_plumbing.md, code cell 4 (Profiles: one code path, three sizes)
PROFILES = ("smoke", "cpu", "full")
DEFAULT_PROFILE = "cpu"


def get_profile(name: str | None = None) -> str:
    """The active profile: `name`, $ANNOTATED_PROFILE or 'cpu'; unknown ones refused."""
    env = os.environ.get("ANNOTATED_PROFILE", DEFAULT_PROFILE)
    profile = (name if name is not None else env).strip().lower()
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r} (from ANNOTATED_PROFILE or the argument); "
            f"valid profiles are: {', '.join(PROFILES)}"
        )
    return profile


def by_profile(smoke: T, cpu: T, full: T, profile: str | None = None) -> T:
    """The value for the active profile: `by_profile(smoke=2, cpu=20, full=200)`."""
    return {"smoke": smoke, "cpu": cpu, "full": full}[get_profile(profile)]


# %% book/appendix_plumbing.md, code cell 5 (Profiles: one code path, three sizes)
def setup_notebook(chapter: str | None = None, seed: int | None = None) -> str:
    """Choose and announce the profile, its run time here, where work goes; plots."""
    device = get_device()
    speed = matmul_speed(device)
    chosen = "ANNOTATED_PROFILE" in os.environ
    if not chosen:
        os.environ["ANNOTATED_PROFILE"] = default_profile(chapter, device, speed)
    profile = get_profile()
    import altair as alt
    import matplotlib.pyplot as plt

    alt.data_transformers.disable_max_rows()
    plt.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight"})
    if seed is not None:
        seed_everything(seed)
    print(f"profile: {profile} | device: {device_name(device)}")
    for line in run_notice(chapter, profile, device, speed, chosen):
        print(line)
    print("to choose another profile (smoke: seconds, cpu, full): run "
          "%env ANNOTATED_PROFILE=full in a cell (or set it in the shell), then "
          "run the notebook again from the top")
    print(where_work_goes())
    if chapter is not None:
        for line in fetch_shipped(chapter):
            print(line)
    return profile


# %% book/appendix_plumbing.md, code cell 7 (Seeds and devices)
@dataclasses.dataclass(frozen=True)
class DistEnv:
    """This process's place among torchrun's processes (rank 0 of 1 when run alone)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, checkpoints and writes results."""
        return self.rank == 0


def distributed_env() -> DistEnv:
    """RANK, LOCAL_RANK, WORLD_SIZE as torchrun sets them; bad ones refused by name."""
    values = {}
    for name, default in (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)):
        raw = os.environ.get(name, str(default))
        try:
            values[name] = int(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not an integer "
                             "(torchrun sets it)") from None
    env = DistEnv(values["RANK"], values["LOCAL_RANK"], values["WORLD_SIZE"])
    if env.world_size < 1 or not 0 <= env.rank < env.world_size:
        raise ValueError(f"RANK={env.rank} must lie in "
                         f"[0, WORLD_SIZE={env.world_size})")
    return env


def init_distributed() -> DistEnv:
    """Join torchrun's process group once (NCCL on GPUs, else gloo); alone, nothing."""
    env = distributed_env()
    if env.world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(env.local_rank)
        torch.distributed.init_process_group(backend)
    return env


# %% book/appendix_plumbing.md, code cell 8 (Seeds and devices)
def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a torch.Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rng_states() -> dict:
    """PyTorch's global RNG states (CPU, every GPU): what a resumed run restores."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_states(states: dict) -> None:
    """Restore what `rng_states` returned (from a checkpoint: on any device)."""
    torch.set_rng_state(states["torch"].cpu())
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


def get_device(prefer: str | None = None) -> torch.device:
    """`prefer`, else CUDA if any (under torchrun: this process's GPU), else CPU."""
    if prefer is not None:
        return torch.device(prefer)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    env = distributed_env()
    if env.world_size > 1:
        return torch.device("cuda", env.local_rank)
    return torch.device("cuda")


def device_name(device: torch.device | None = None) -> str:
    """A readable name of the device: the GPU model, or the CPU and its thread count."""
    device = device or get_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


# %% book/appendix_plumbing.md, code cell 9 (Seeds and devices)
def _in_notebook() -> bool:
    """True inside a live Jupyter/Colab kernel that can draw tqdm's notebook widget."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    kernels = ("ZMQInteractiveShell", "Shell")
    return shell is not None and shell.__class__.__name__ in kernels


def progress_bar(iterable: Any = None, desc: str = "", total: int | None = None,
                 enabled: bool | None = None, initial: int = 0):
    """tqdm in a terminal or live notebook; silent in tests, the book build and logs."""
    if enabled is None:
        quiet = os.environ.get("TQDM_DISABLE") or os.environ.get("ANNOTATED_BOOK_BUILD")
        enabled = not quiet and (sys.stderr.isatty() or _in_notebook())
    if enabled and _in_notebook():
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, initial=initial,
                disable=not enabled, leave=False)


# %% book/appendix_plumbing.md, code cell 11 (Data: where it lives and how it arrives)
def data_dir() -> Path:
    """The data folder: $ANNOTATED_DATA if set, else ~/.cache/annotated."""
    env = os.environ.get("ANNOTATED_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "annotated"


def checkpoint_dir() -> Path:
    """Where models go: $ANNOTATED_CHECKPOINTS, else checkpoints/ in work_home()."""
    return repo_folder("ANNOTATED_CHECKPOINTS", "checkpoints")


# %% book/appendix_plumbing.md, code cell 12 (Data: where it lives and how it arrives)
class ChecksumError(RuntimeError):
    """A data file's SHA-256 digest is not the published one."""


class DataUnavailableError(RuntimeError):
    """A data file is not on disk and could not be downloaded."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_digest(path: Path, sha256: str, origin: str,
                  name: str | None = None) -> None:
    actual = sha256_file(path)
    if actual != sha256.lower():
        raise ChecksumError(
            f"{name or path.name} ({origin}) is corrupt: SHA-256 {actual}, "
            f"expected {sha256.lower()}"
            + ("" if name else f"; delete {path} and try again")
        )


# %% book/appendix_plumbing.md, code cell 13 (Data: where it lives and how it arrives)
def fetch(url: str, sha256: str, subdir: str, filename: str | None = None,
          timeout: float = 60.0, folder: Path | None = None) -> Path:
    """The verified copy of `url` in data_dir()/subdir (or folder), got if need be."""
    filename = filename or url.rsplit("/", 1)[-1]
    target = (data_dir() / subdir if folder is None else Path(folder)) / filename
    if target.exists():
        _check_digest(target, sha256, f"found at {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{filename}.",
                                    suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    expected = response.headers.get("Content-Length")
                    received = 0
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
                        received += len(block)
                    if expected is not None and received != int(expected):
                        raise OSError(f"connection closed after {received} "
                                      f"of {expected} bytes")
            except (urllib.error.URLError, OSError, ValueError) as err:
                problem = DataUnavailableError(
                    f"{filename} is not in {target.parent} and downloading it "
                    f"from {url} failed ({err}); download it by hand to {target}"
                    + (f", or set ANNOTATED_DATA to a folder whose '{subdir}/' holds it"
                       if folder is None else ""))
                problem.reason = str(err)  # for callers that say it their own way
                raise problem from None
        _check_digest(tmp, sha256, f"downloaded from {url}", name=filename)
        os.replace(tmp, target)  # atomic on POSIX and Windows
    finally:
        tmp.unlink(missing_ok=True)
    return target


# %% book/appendix_plumbing.md, code cell 15 (Results with their provenance)
def _is_this_repository(folder: Path) -> bool:
    """True for a folder whose pyproject.toml names this book's distribution."""
    try:
        with open(folder / "pyproject.toml", "rb") as f:
            return tomllib.load(f).get("project", {}).get("name") == DIST
    except (OSError, tomllib.TOMLDecodeError):
        return False


def repo_root(start: Path | None = None) -> Path | None:
    """This book's repository at or above `start` (its pyproject.toml says so)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_this_repository(folder):
            return folder
    return None


def work_home() -> Path:
    """$ANNOTATED_HOME, else the repository, else ~/annotated-attention-book."""
    env = os.environ.get("ANNOTATED_HOME")
    if env:
        return Path(env).expanduser()
    root = repo_root()
    return root if root is not None else Path.home() / DIST


def repo_folder(env_var: str, name: str) -> Path:
    """$env_var if set, else the folder `name` in work_home()."""
    env = os.environ.get(env_var)
    return Path(env).expanduser() if env else work_home() / name


def results_dir() -> Path:
    """Where results go: $ANNOTATED_RESULTS, else results/ in work_home()."""
    return repo_folder("ANNOTATED_RESULTS", "results")


def git_commit(root: Path | None = None) -> str:
    """The commit ('+dirty' if changed outside results/), else the package version."""
    cwd = root or repo_root()
    if cwd is None:  # an installed package, used outside the repository
        return f"{DIST} {annotated.__version__}"

    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        commit = run("rev-parse", "--short=12", "HEAD")
        # results/ is excluded: a build rewrites it chapter by chapter, changing no code
        changed = run("status", "--porcelain", "--untracked-files=no", "--", ".",
                      ":(exclude)results")
        return commit + ("+dirty" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# %% book/appendix_plumbing.md, code cell 16 (Results with their provenance)
def _jsonable(value: Any) -> Any:
    """Turn tensors, arrays, paths and dataclasses into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return _jsonable(value.tolist())
    if hasattr(value, "__dataclass_fields__"):
        return _jsonable(vars(value))
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def save_results(chapter: str, metrics: dict, settings: dict | None = None,
                 wall_time_s: float | None = None, *, profile: str,
                 device: torch.device | None = None) -> Path:
    """Write results/<chapter>.<profile>.json: metrics and provenance (rank 0 only)."""
    if not metrics:
        raise ValueError(f"save_results({chapter!r}): no metrics to save")
    profile = get_profile(profile)  # the caller says which; an unknown name is refused
    now = datetime.datetime.now(datetime.timezone.utc)  # datetime.UTC needs Python 3.11
    record = {
        "chapter": chapter,
        "profile": profile,
        "commit": git_commit(),
        "device": device_name(device),
        "date": now.isoformat(timespec="seconds"),
        "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "settings": _jsonable(settings or {}),
        "metrics": _jsonable(metrics),
    }
    out = results_dir() / f"{chapter}.{profile}.json"
    if not distributed_env().is_main:  # under torchrun only rank 0 writes
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.part")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, out)
    return out


def load_results(chapter: str, profile: str) -> dict | None:
    """The recorded results/<chapter>.<profile>.json, or None when there is none."""
    path = results_dir() / f"{chapter}.{get_profile(profile)}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not a results file (bad JSON: {err})") from None


@contextlib.contextmanager
def timer() -> Iterator[dict]:
    """`with timer() as t: ...` then `t['seconds']` holds the wall time of the block."""
    box = {"seconds": float("nan")}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - start


# %% book/appendix_plumbing.md, code cell 18 (Claims the run checks)
class ClaimError(AssertionError):
    """A claim made in the prose does not hold in the run that renders it."""


CLAIM_POLICIES = ("enforce", "warn")
_claims_seen: dict[tuple[str, str], dict[str, dict]] = {}


def claims_policy() -> str:
    """$ANNOTATED_CLAIMS: 'enforce' (the default) or 'warn' (a failing claim warns)."""
    policy = os.environ.get("ANNOTATED_CLAIMS", "enforce").strip().lower() or "enforce"
    if policy not in CLAIM_POLICIES:
        raise ValueError(f"ANNOTATED_CLAIMS={policy!r}: "
                         f"expected one of {CLAIM_POLICIES}")
    return policy


def claims_path(chapter: str, profile: str) -> Path:
    """One chapter's claims ledger: results/claims/<chapter>.<profile>.json."""
    return results_dir() / "claims" / f"{chapter}.{get_profile(profile)}.json"


def check_claim(chapter: str, claim: str, holds: bool, evidence: str, *,
                profile: str, source: str = "this run") -> bool:
    """Print whether `claim` holds, with `evidence`; record it; fail when it must hold.

    Raises ClaimError in the cpu and full profiles when the claim does not hold,
    unless ANNOTATED_CLAIMS=warn. Returns whether it holds.
    """
    profile, policy = get_profile(profile), claims_policy()
    if not claim.strip() or not evidence.strip():
        raise ValueError("check_claim: say what is claimed and the numbers it rests on")
    holds = bool(holds)
    enforced = profile != "smoke" and policy == "enforce"
    where = f"{source} ({profile} profile)"
    ledger = _claims_seen.setdefault((chapter, profile), {})
    ledger[claim] = {"holds": holds, "evidence": evidence, "source": source,
                     "enforced": enforced}
    _write_claims(chapter, profile, ledger)  # a failing claim is recorded, then raised
    if holds:
        print(f"✓ holds in {where}: {claim} — {evidence}")
    elif profile == "smoke":
        print(f"· not enforced in {where}: {claim} — {evidence}")
    elif enforced:
        raise ClaimError(f"claim does not hold in {where}: {claim!r} — {evidence} "
                         "(set ANNOTATED_CLAIMS=warn to build anyway, with a warning)")
    else:
        print(f"✗ DOES NOT HOLD in {where}: {claim} — {evidence} "
              "(ANNOTATED_CLAIMS=warn)")
    return holds


def _write_claims(chapter: str, profile: str, ledger: dict[str, dict]) -> None:
    """Write every claim this process checked for `chapter` (rank 0 only)."""
    if not distributed_env().is_main:
        return
    record = {"chapter": chapter, "profile": profile, "commit": git_commit(),
              "date": datetime.datetime.now(datetime.timezone.utc)
              .isoformat(timespec="seconds"),
              "claims": [{"claim": name, **entry} for name, entry in ledger.items()]}
    out = claims_path(chapter, profile)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.part")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out)


# %% book/appendix_plumbing.md, code cell 20 (Checkpoints that refuse the wrong model)
class CheckpointError(RuntimeError):
    """A checkpoint is corrupt or was saved with other settings."""


def save_checkpoint(path: str | Path, model: torch.nn.Module, settings: dict,
                    optimizer: torch.optim.Optimizer | None = None,
                    **state: Any) -> Path:
    """Atomically save model (+ optimizer) weights, settings and state (epoch, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"config": _jsonable(settings), "model": model.state_dict(),
               "state": state, "builder": model_builder(model),
               "optimizer": None if optimizer is None else optimizer.state_dict()}
    return _save_atomically(payload, path)


def model_builder(model: torch.nn.Module) -> dict | None:
    """What rebuilds `model`: its class, its config's class and fields (or None).

    Only a model of this package with a dataclass `.cfg` can say; the file keeps
    it beside the settings, not among them, so it is not part of the match.
    """
    cfg = getattr(model, "cfg", None)
    if not type(model).__module__.startswith("annotated.") or not (
            dataclasses.is_dataclass(cfg)):
        return None
    name = lambda x: f"{type(x).__module__}.{type(x).__qualname__}"  # noqa: E731
    return {"class": name(model), "config_class": name(cfg),
            "config": _jsonable(dataclasses.asdict(cfg))}


def _save_atomically(payload: dict, path: Path) -> Path:
    """torch.save to a .part file, then rename: no crash leaves half a file at path."""
    tmp = path.with_name(path.name + ".part")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: leave no .part behind either
        tmp.unlink(missing_ok=True)
        raise
    return path


def _check_settings(path: Path, saved: dict, settings: dict) -> None:
    """Raise CheckpointError naming every field that differs from the saved settings."""
    wanted = _jsonable(settings)
    diff = {k: (saved.get(k), wanted.get(k)) for k in sorted(set(saved) | set(wanted))
            if saved.get(k) != wanted.get(k)}
    if diff:
        detail = "; ".join(f"{k}: saved {a!r}, wanted {b!r}"
                           for k, (a, b) in diff.items())
        raise CheckpointError(f"{path} was saved with other settings ({detail})")


def load_checkpoint(path: str | Path, model: torch.nn.Module, settings: dict,
                    optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with these settings into model (+ optimizer); its state."""
    path = Path(path)
    try:  # weights_only: tensors and plain containers only, never code to run
        payload = torch.load(path, map_location=map_location, weights_only=True)
        saved = payload["config"]
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - a failure to unpickle: a corrupt file
        # torch.save writes a zip archive: anything else is a damaged file, even
        # when its bytes happen to read as a pickled object
        if zipfile.is_zipfile(path) and "weights only load failed" in str(err).lower():
            raise CheckpointError(f"{path} holds more than tensors and plain values "
                                  "(code could run on loading), so it is refused; "
                                  "load only checkpoints you trust") from None
        raise CheckpointError(f"{path} is not a readable checkpoint "
                              f"({type(err).__name__}: {err})") from None
    _check_settings(path, saved, settings)
    model.load_state_dict(payload["model"])
    if optimizer is not None and payload["optimizer"] is not None:
        optimizer.load_state_dict(payload["optimizer"])
    return payload["state"]


# %% book/appendix_plumbing.md, code cell 22 (Small weights to ship with the book)
COMPACT_FORMAT = "annotated-int8-rows/1"


def weights_dir() -> Path:
    """Where shipped weights live: $ANNOTATED_WEIGHTS, else weights/ in work_home()."""
    return repo_folder("ANNOTATED_WEIGHTS", "weights")


def quantize_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 codes (rows, cols) and float32 scales (rows, 1); rows = the first dim."""
    rows = t.detach().float().reshape(t.size(0), -1)  # (rows, cols)
    scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127  # (rows, 1)
    return torch.round(rows / scale).to(torch.int8), scale


def save_compact(path: str | Path, model: torch.nn.Module, settings: dict) -> Path:
    """Atomically save weights small: matrices as int8 rows and scales, rest as is."""
    tensors: dict[str, Any] = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu()
        if t.is_floating_point() and t.dim() >= 2:
            codes, scale = quantize_rows(t)
            tensors[name] = {"codes": codes, "scale": scale, "shape": list(t.shape),
                             "dtype": str(t.dtype)}
        else:
            tensors[name] = t.clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": COMPACT_FORMAT, "config": _jsonable(settings),
               "tensors": tensors, "builder": model_builder(model)}
    return _save_atomically(payload, path)


def _dequantized(tensors: dict) -> dict[str, torch.Tensor]:
    """save_compact's tensors as a state dict: int8 rows times their scales."""
    dtypes = {"torch.float32": torch.float32, "torch.float16": torch.float16,
              "torch.bfloat16": torch.bfloat16}

    def dequantize(t: dict) -> torch.Tensor:
        codes = t["codes"].float() * t["scale"]  # (rows, cols)
        return codes.reshape(t["shape"]).to(dtypes[t["dtype"]])

    return {name: dequantize(t) if isinstance(t, dict) else t
            for name, t in tensors.items()}


def load_compact(path: str | Path, model: torch.nn.Module,
                 settings: dict) -> torch.nn.Module:
    """Load save_compact's weights of these settings into model, dequantized."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        fmt, saved, tensors = payload["format"], payload["config"], payload["tensors"]
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - a failure to unpickle: a corrupt file
        raise CheckpointError(f"{path} is not a readable weights file "
                              f"({type(err).__name__}: {err})") from None
    if fmt != COMPACT_FORMAT:
        raise CheckpointError(f"{path} has format {fmt!r}, not {COMPACT_FORMAT!r}")
    _check_settings(path, saved, settings)
    model.load_state_dict(_dequantized(tensors))
    return model


# %% book/appendix_plumbing.md, code cell 24 (A model from its file alone)
def build_model(builder: dict, origin: str | Path = "the file") -> torch.nn.Module:
    """A fresh model from model_builder's record: its config, then the class."""
    import importlib

    def find(qualified: str):
        module, _, name = qualified.rpartition(".")
        if not module.startswith("annotated."):
            raise CheckpointError(f"{origin} names {qualified!r}, not a class of "
                                  "this package: it is not built")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            raise CheckpointError(f"{origin} names {qualified!r}, which this "
                                  f"version of the package does not have") from None

    return find(builder["class"])(find(builder["config_class"])(**builder["config"]))


def _gist(err: Exception) -> str:
    """One line of an error's message: torch's "Unsupported global" line if any."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", x).strip() for x in str(err).splitlines()]
    lines = [x for x in lines if x] or [""]
    return next((x for x in lines if "Unsupported global" in x), lines[0])[:200]


def load_model(path: str | Path,
               map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """The model a checkpoint or shipped-weights file holds, ready, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint or weights file at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
        builder = payload.get("builder")
    except Exception as err:  # noqa: BLE001 - a failure to unpickle: a corrupt file
        raise CheckpointError(f"{path} is not a readable checkpoint or weights file "
                              f"({type(err).__name__}: {_gist(err)})") from None
    if builder is None:
        raise CheckpointError(
            f"{path} does not name its model (written before files did, or not a "
            "model of this package): build the model and use load_checkpoint or "
            "load_compact with its settings")
    model = build_model(builder, path)
    if payload.get("format") == COMPACT_FORMAT:
        model.load_state_dict(_dequantized(payload["tensors"]))
    else:
        model.load_state_dict(payload["model"])
        if not payload.get("state", {}).get("finished", False):
            epochs = payload.get("state", {}).get("history", {}).get("epoch", [])
            print(f"{path.name}: an unfinished run (after epoch "
                  f"{epochs[-1] if epochs else 0}), loaded as it stands")
    return model.to(map_location).eval()


# %% book/appendix_plumbing.md, code cell 26 (Where the work goes)
FOLDERS = {"checkpoints": "ANNOTATED_CHECKPOINTS", "results": "ANNOTATED_RESULTS",
           "weights": "ANNOTATED_WEIGHTS"}


def _writable(folder: Path, setting: str | None) -> None:
    """Make `folder` and write a file in it; one sentence naming `setting` if not."""
    mount = folder.parent.parent if setting == "ANNOTATED_HOME" else folder.parent
    try:
        if setting is not None and not mount.is_dir():  # e.g. Drive not mounted
            raise FileNotFoundError(f"{mount} does not exist")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise PermissionError(
            f"{folder} (from {setting or 'the default'}) cannot be written "
            f"({err.strerror or err}): mount the drive it is on, or set "
            "ANNOTATED_HOME to a folder you can write, then run this cell again"
        ) from None


def where_work_goes() -> str:
    """Check that checkpoints/, results/ and weights/ can be written; say where."""
    lines = []
    for name, var in FOLDERS.items():
        setting = var if os.environ.get(var) else (
            "ANNOTATED_HOME" if os.environ.get("ANNOTATED_HOME") else None)
        folder = repo_folder(var, name)
        _writable(folder, setting)
        lines.append(f"  {name:<12}{folder}")
    text = "work goes to:\n" + "\n".join(lines)
    if "google.colab" in sys.modules and "ANNOTATED_HOME" not in os.environ:
        text += ("\n  (this Colab runtime's disk is lost when the session ends: "
                 "to keep the work, mount Google Drive and set ANNOTATED_HOME to "
                 "a folder on it; see the plumbing appendix)")
    return text


# %% book/appendix_plumbing.md, code cell 28 (Shipped files, on any copy of the book)
SHIPPED = {  # chapter -> the full run's files it shows, with their SHA-256
    "03_seq2seq": {
        "weights/03_lstm+attn.full.int8.pt":
            "ffdc209875ca0e653e6b56ef16b3341613375b7ad277a3ddce12509703cff1d5",
        "results/03_seq2seq.full.json":
            "a53831476303004c61cae49c7225b30c21c3b8d2f1e4d8c5ca3e1e722a2374b6",
    },
    "05_transformer": {
        "weights/05_transformer.full.int8.pt":
            "27332c1483839c2da6ecf12850173d0270e7d157974affab417c3d54423f68f7",
        "results/05_transformer.full.json":
            "1a18fefc32bca1cfdef36cb2631bcb96fab05212f763c9f00e30fa136502382c",
        "results/03_seq2seq.full.json":
            "a53831476303004c61cae49c7225b30c21c3b8d2f1e4d8c5ca3e1e722a2374b6",
        "results/05_transformer_recipe.cpu.json":
            "04e0313850155507ab48b8e7057dd0ea40a902cb036204ae1f8833acf19429a4",
    },
}


def shipped_url(path: str) -> str:
    """The address of a repository file: $ANNOTATED_SHIPPED_URL or GitHub's raw one."""
    base = os.environ.get("ANNOTATED_SHIPPED_URL")
    if not base:
        owner_repo = annotated.__repository__.split("github.com/", 1)[1].strip("/")
        base = f"https://raw.githubusercontent.com/{owner_repo}/{annotated.__branch__}"
    return f"{base.rstrip('/')}/{path}"


def shipped_copy(path: str) -> Path:
    """Its copy here: weights/x in weights_dir(), results/x in results_dir()."""
    folder, name = path.split("/", 1)
    return {"weights": weights_dir, "results": results_dir}[folder]() / name


def fetch_shipped(chapter: str) -> list[str]:
    """Fetch the chapter's shipped files missing here; a line on each file, problem."""
    lines, offline = [], []
    for path, sha256 in SHIPPED.get(chapter, {}).items():
        target = shipped_copy(path)
        if target.exists():  # the repository's own file, or one fetched before
            continue
        try:
            fetch(shipped_url(urllib.parse.quote(path)), sha256, "",
                  filename=target.name, folder=target.parent)
            lines.append(f"fetched {path} into {target.parent}")
        except DataUnavailableError as err:
            offline.append((target.name, getattr(err, "reason", str(err))))
        except ChecksumError as err:
            lines.append(f"{err}; nothing was kept (is ANNOTATED_SHIPPED_URL or the "
                         "package out of date?), so the chapter runs without it")
    if offline:
        names = ", ".join(name for name, _ in offline)
        lines.append(f"offline: the full run's {names} could not be fetched from "
                     f"{shipped_url('')} ({offline[0][1]}); the chapter runs without "
                     "them, and the rendered book shows what they hold")
    return lines


# %% book/appendix_plumbing.md, code cell 30 (What a run costs, here)
REFERENCE_MATMUL_FLOPS = 1.0e11  # the reference CPU's float32 speed (see above)
GPU_EFFICIENCY = 0.15  # the share of the probe's speed small models reach on a GPU
LONG_RUN_S = 30 * 60  # longer than this is announced, and not a GPU's default
RUN_SECONDS = {  # a whole chapter on the reference CPU, seconds, by profile
    "01_attention": {"smoke": 30, "cpu": 120, "full": 120},
    "02_translation": {"smoke": 30, "cpu": 120, "full": 9_000},
    "03_seq2seq": {"smoke": 60, "cpu": 1_100, "full": 9_600},
    "04_bptt": {"smoke": 20, "cpu": 60, "full": 120},
    "05_transformer": {"smoke": 90, "cpu": 1_300, "full": 4_800},
    # full: 200 epochs of 50,000 images at the measured 49 (ViT), 103 (CNN) images/s
    "06_vit": {"smoke": 90, "cpu": 1_500, "full": round(1e7 / 49 + 1e7 / 103)},
    "07_vit_inside": {"smoke": 60, "cpu": 150, "full": 900},
    "appendix_plumbing": {"smoke": 30, "cpu": 30, "full": 30},
    "appendix_training": {"smoke": 30, "cpu": 60, "full": 60},
}
# chapter -> (the chapter that trains its models, their checkpoints' names)
TRAINED_ELSEWHERE = {"07_vit_inside": ("06_vit", ("vit_cifar10", "cnn_cifar10"))}


def matmul_speed(device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of a (2048, 512) @ (512, 1024) product on `device`, training precision."""
    from annotated.training import autocast_dtype

    dtype = autocast_dtype(device) or torch.float32
    a = torch.ones(2048, 512, device=device, dtype=dtype)  # no random numbers drawn
    b = torch.ones(512, 1024, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    a @ b  # warm-up
    sync()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        seconds.append(time.perf_counter() - start)
    return 2 * 2048 * 512 * 1024 / min(seconds)  # the fastest: the least disturbed


# %% book/appendix_plumbing.md, code cell 31 (What a run costs, here)
def _trains_first(chapter: str | None, profile: str) -> str | None:
    """The chapter whose models this one must train first (checkpoints missing)."""
    if chapter not in TRAINED_ELSEWHERE:
        return None
    source, names = TRAINED_ELSEWHERE[chapter]
    there = all((checkpoint_dir() / f"{n}.{profile}.pt").exists() for n in names)
    return None if there else source


def estimate_seconds(chapter: str | None, profile: str, device: torch.device,
                     speed: float) -> float | None:
    """The chapter's run time in `profile` here (None if never measured)."""
    if chapter not in RUN_SECONDS:
        return None
    seconds = RUN_SECONDS[chapter][profile]
    source = _trains_first(chapter, profile)
    if source is not None:
        seconds += RUN_SECONDS[source][profile]
    share = GPU_EFFICIENCY if device.type == "cuda" else 1.0
    return seconds * REFERENCE_MATMUL_FLOPS / (speed * share)


def default_profile(chapter: str | None, device: torch.device, speed: float) -> str:
    """cpu on a CPU; on a GPU full, unless the chapter's full run is long there."""
    if device.type != "cuda":
        return DEFAULT_PROFILE
    full = estimate_seconds(chapter, "full", device, speed)
    return "full" if full is None or full <= LONG_RUN_S else "cpu"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


# %% book/appendix_plumbing.md, code cell 32 (What a run costs, here)
def run_notice(chapter: str | None, profile: str, device: torch.device,
               speed: float, chosen: bool = True) -> list[str]:
    """What the run will cost here, a warning if it is long, and why it was chosen."""
    here = estimate_seconds(chapter, profile, device, speed)
    if here is None:
        return []
    lines = [f"this chapter ({chapter}) in the {profile} profile: about "
             f"{_duration(here)} on this device (rough; measured on a 2-core CPU, "
             f"scaled by this device's speed)"]
    source = _trains_first(chapter, profile)
    if source is not None:
        lines.append(f"  (that includes training {source}'s models: their "
                     f"checkpoints are not in {checkpoint_dir()})")
    if here > LONG_RUN_S:
        lines.append(f"WARNING: a long run, about {_duration(here)}; it checkpoints "
                     "every epoch, so running it again resumes it")
    full = estimate_seconds(chapter, "full", device, speed)
    if not chosen and profile != "full" and device.type == "cuda":
        lines.append(f"  (chosen because the full profile would take about "
                     f"{_duration(full)} here)")
    return lines
