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
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from collections.abc import Iterator
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")


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
def setup_notebook(seed: int | None = None) -> str:
    """Choose the profile if unset (GPU: full, else cpu), set up plots; print it."""
    if "ANNOTATED_PROFILE" not in os.environ:
        default = "full" if torch.cuda.is_available() else DEFAULT_PROFILE
        os.environ["ANNOTATED_PROFILE"] = default
    profile = get_profile()
    import altair as alt
    import matplotlib.pyplot as plt

    alt.data_transformers.disable_max_rows()
    plt.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight"})
    if seed is not None:
        seed_everything(seed)
    print(f"profile: {profile} | device: {device_name()}")
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
    """Where models go: $ANNOTATED_CHECKPOINTS, <repo>/checkpoints or ./checkpoints."""
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
          timeout: float = 60.0) -> Path:
    """The verified local copy of `url` in data_dir()/subdir, downloaded if needed."""
    filename = filename or url.rsplit("/", 1)[-1]
    target = data_dir() / subdir / filename
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
                raise DataUnavailableError(
                    f"{filename} is not in {target.parent} and downloading it "
                    f"from {url} failed ({err}); download it by hand to {target}, "
                    f"or set ANNOTATED_DATA to a folder whose '{subdir}/' holds it"
                ) from None
        _check_digest(tmp, sha256, f"downloaded from {url}", name=filename)
        os.replace(tmp, target)  # atomic on POSIX and Windows
    finally:
        tmp.unlink(missing_ok=True)
    return target


# %% book/appendix_plumbing.md, code cell 15 (Results with their provenance)
def repo_root(start: Path | None = None) -> Path | None:
    """The repository root (the folder with `_toc.yml`) at or above `start`, if any."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists():
            return folder
    return None


def repo_folder(env_var: str, name: str) -> Path:
    """$env_var if set, else `name` in the repository root, else `name` in the cwd."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    root = repo_root()
    return (root if root is not None else Path.cwd()) / name


def results_dir() -> Path:
    """Where results go: $ANNOTATED_RESULTS, else <repo>/results, else ./results."""
    return repo_folder("ANNOTATED_RESULTS", "results")


def git_commit(root: Path | None = None) -> str:
    """The current commit, '+dirty' if changed outside results/, or 'unknown'."""
    cwd = root or repo_root() or Path.cwd()

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
    ledger = _claims_seen.setdefault((chapter, profile), {})
    ledger[claim] = {"holds": holds, "evidence": evidence, "source": source,
                     "enforced": enforced}
    _write_claims(chapter, profile, ledger)
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
               "state": state,
               "optimizer": None if optimizer is None else optimizer.state_dict()}
    return _save_atomically(payload, path)


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
        if "weights only load failed" in str(err).lower():
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
    """Where shipped weights live: $ANNOTATED_WEIGHTS, <repo>/weights or ./weights."""
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
               "tensors": tensors}
    return _save_atomically(payload, path)


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
    dtypes = {"torch.float32": torch.float32, "torch.float16": torch.float16,
              "torch.bfloat16": torch.bfloat16}

    def dequantize(t: dict) -> torch.Tensor:
        codes = t["codes"].float() * t["scale"]  # (rows, cols)
        return codes.reshape(t["shape"]).to(dtypes[t["dtype"]])

    state = {name: dequantize(t) if isinstance(t, dict) else t
             for name, t in tensors.items()}
    model.load_state_dict(state)
    return model
