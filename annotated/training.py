# GENERATED FILE, DO NOT EDIT. It is exported from book/appendix_training.md
# by tools/export.py; change the chapter and run `make export` instead.
"""Appendix: one training loop (from book/appendix_training.md)."""


# %% book/appendix_training.md, code cell 3 (Appendix: one training loop)
import contextlib
import copy
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from annotated.plumbing import (CheckpointError, device_name, distributed_env,
                                git_commit, init_distributed, load_checkpoint,
                                load_compact, load_model, progress_bar, rng_states,
                                save_checkpoint, save_compact, set_rng_states)

Step = Callable[[nn.Module, Any], tuple[torch.Tensor, float, int]]
Evaluate = Callable[[nn.Module], dict]


# %% book/appendix_training.md, code cell 4 (The settings)
@dataclasses.dataclass
class TrainConfig:
    """How fit() trains: length, clipping, early stopping, precision, reporting."""

    epochs: int = 10  # maximum passes over the training batches
    max_steps: int | None = None  # at most this many steps per epoch (None: all)
    lr: float = 1e-3  # Adam's learning rate, when fit() builds the optimizer
    clip: float | None = 1.0  # maximum global gradient norm (None: no clipping)
    patience: int | None = 3  # stop after this many epochs without a better val loss
    scheduler_interval: str = "epoch"  # scheduler.step() every "epoch" or "step"
    amp: bool = True  # mixed precision on a GPU (no effect on a CPU)
    stop_after: int | None = None  # end this call after this many epochs (resumable)
    verbose: bool = True  # print one line per epoch (rank 0 only)

    def __post_init__(self):
        if self.scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', "
                             f"got {self.scheduler_interval!r}")
        for name in ("epochs", "max_steps", "patience", "stop_after"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                none = "" if name == "epochs" else " or None"
                raise ValueError(f"{name} must be a positive whole number{none}, "
                                 f"got {value!r}")

    def settings(self) -> dict:
        """The fields that change the result: what a checkpoint must match."""
        skip = {"stop_after", "verbose", "lr"}  # lr: the optimizer's, recorded by fit
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


# %% book/appendix_training.md, code cell 6 (Mixed precision)
def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The 16-bit type autocast uses on `device`, or None (a CPU, or disabled)."""
    if not enabled or device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision on a GPU (see autocast_dtype); a do-nothing context on a CPU."""
    dtype = autocast_dtype(device, enabled)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    return next(iter(model.parameters()), torch.empty(0)).device


# %% book/appendix_training.md, code cell 7 (One epoch)
def _share_of_items(loss: torch.Tensor, count: int) -> tuple[torch.Tensor, bool]:
    """Under DDP: the loss scaled by this process's share of the items; and whether
    every process's loss is finite."""
    finite = bool(torch.isfinite(loss))
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return loss, finite
    stats = torch.tensor([float(count), float(not finite)], device=loss.device)
    dist.all_reduce(stats)  # (items over all processes, processes with a bad loss)
    return loss * (count * dist.get_world_size() / stats[0]), bool(stats[1] == 0)


def _summed(*values: float) -> list[float]:
    """The values summed over all processes (themselves when run alone)."""
    if not dist.is_initialized():
        return list(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    sums = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    return sums.tolist()


# %% book/appendix_training.md, code cell 8 (One epoch)
def train_epoch(model: nn.Module, step: Step, batches: Iterable,
                optimizer: torch.optim.Optimizer, config: TrainConfig,
                scheduler=None, scaler: torch.amp.GradScaler | None = None) -> dict:
    """One pass of `step` over `batches` (at most max_steps); the epoch's figures."""
    device, scaler = model_device(model), scaler or torch.amp.GradScaler(enabled=False)
    per_step = scheduler if config.scheduler_interval == "step" else None
    total = len(batches) if hasattr(batches, "__len__") else None
    total = min(total, config.max_steps) if (total and config.max_steps) else total
    show = None if init_distributed().is_main else False  # a bar on rank 0 only
    model.train()
    reported_sum, count_sum, losses, start = 0.0, 0, [], time.perf_counter()
    for batch in progress_bar(batches, "train", total, show):
        with autocast(device, config.amp):
            loss, reported, count = step(model, batch)
        weighted, finite = _share_of_items(loss, count)
        if not finite:
            whose = (f"is {loss.item()}" if not torch.isfinite(loss)
                     else "is not finite in another process")
            raise FloatingPointError(f"the training loss {whose} at step "
                                     f"{len(losses) + 1} of the epoch")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(weighted).backward()
        if config.clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
        scaler.step(optimizer)
        scaler.update()
        if per_step is not None:  # a per-step schedule (warm-up and decay)
            per_step.step()
        reported_sum, count_sum = reported_sum + float(reported), count_sum + count
        losses.append(float(reported) / max(count, 1))
        if config.max_steps is not None and len(losses) >= config.max_steps:
            break
    if not losses:
        raise ValueError("the training batches are empty: no step was taken")
    seconds = time.perf_counter() - start
    reported_sum, count_sum = _summed(reported_sum, float(count_sum))
    return {"loss": reported_sum / max(count_sum, 1), "items": int(count_sum),
            "steps": len(losses), "seconds": seconds, "lr": lr,
            "items_per_s": count_sum / seconds, "step_loss": losses}


# %% book/appendix_training.md, code cell 9 (Checkpoints, and one policy for them)
def describe_step(step: Callable) -> dict:
    """The step's name and the keyword arguments bound by functools.partial."""
    if isinstance(step, functools.partial):
        return {"name": describe_step(step.func)["name"],
                **{k: getattr(v, "__qualname__", v) for k, v in step.keywords.items()}}
    return {"name": getattr(step, "__qualname__", type(step).__name__)}


def describe_optimizer(optimizer: torch.optim.Optimizer, scheduler=None) -> dict:
    """The optimizer's class and its constructor's numbers (lr, betas, ...), and
    the schedule's class."""
    numbers = {k: v for k, v in optimizer.defaults.items()
               if isinstance(v, (int, float, tuple)) and not isinstance(v, bool)}
    return {"name": type(optimizer).__name__, **numbers,
            "schedule": None if scheduler is None else type(scheduler).__name__}


def flat_settings(settings: dict, prefix: str = "") -> dict:
    """Nested settings as one level, {"train.epochs": 4, ...}: refusals name a field."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat |= flat_settings(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _data_state(batches: Iterable):
    """What saves and restores where `batches` is: it, its batch sampler, or None."""
    for obj in (batches, getattr(batches, "batch_sampler", None)):
        if callable(getattr(obj, "state_dict", None)) and callable(
                getattr(obj, "load_state_dict", None)):
            return obj
    return None


# %% book/appendix_training.md, code cell 10 (Checkpoints, and one policy for them)
@dataclasses.dataclass
class _Run:
    """The state of one call of fit(): its history and early-stopping bookkeeping."""

    history: dict = dataclasses.field(default_factory=lambda: {
        "epoch": [], "train_loss": [], "lr": [], "seconds": [], "items": [],
        "items_per_s": [], "step_loss": [], "best_epoch": None,
        "best_val_loss": math.inf, "stopped_early": False, "finished": False})
    best_state: dict | None = None
    bad_epochs: int = 0

    @property
    def done(self) -> int:
        return len(self.history["epoch"])

    def record(self, epoch: int, train: dict, val: dict) -> bool:
        """Record one epoch; True when its validation loss is the best so far."""
        h = self.history
        for key, value in (("epoch", epoch), ("train_loss", train["loss"]),
                           ("lr", train["lr"]),
                           ("seconds", train["seconds"]), ("items", train["items"]),
                           ("items_per_s", train["items_per_s"])):
            h[key].append(value)
        h["step_loss"] += train["step_loss"]
        for key, value in val.items():
            h.setdefault(f"val_{key}", []).append(value)
        improved = "loss" not in val or val["loss"] < h["best_val_loss"]
        if improved:
            h["best_epoch"], h["best_val_loss"] = epoch, val.get("loss", math.nan)
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return improved


# %% book/appendix_training.md, code cell 11 (Checkpoints, and one policy for them)
def _save_epoch(path: Path, model: nn.Module, settings: dict, run: _Run, optimizer,
                scheduler, scaler, data, rng: list[dict]) -> None:
    """The resumable state after a whole epoch (rank 0 writes it)."""
    save_checkpoint(path, model, settings, optimizer, history=run.history,
                    finished=False, best_model=run.best_state,
                    bad_epochs=run.bad_epochs,
                    scheduler=None if scheduler is None else scheduler.state_dict(),
                    scaler=scaler.state_dict(), rng=rng,
                    data=None if data is None else data.state_dict())


def _all_rng_states() -> list[dict]:
    """Every process's random number generators, by rank (one entry when alone)."""
    states = [rng_states()]
    if dist.is_initialized() and dist.get_world_size() > 1:
        states = [None] * dist.get_world_size()
        dist.all_gather_object(states, rng_states())
    return states


def _resume(state: dict, run: _Run, scheduler, scaler, data) -> None:
    """Put back what _save_epoch wrote (weights and optimizer are loaded already)."""
    if "rng" not in state:
        raise CheckpointError("an unfinished run saved without the state needed to "
                              "resume it (by an older version of fit); delete it to "
                              "train again")
    run.history, run.best_state = state["history"], state["best_model"]
    run.bad_epochs = state["bad_epochs"]
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if data is not None and state.get("data") is not None:
        data.load_state_dict(state["data"])
    rngs, rank = state["rng"], distributed_env().rank  # one entry per saving process
    set_rng_states(rngs[rank % len(rngs)])  # dropout, augmentation: their own streams


# %% book/appendix_training.md, code cell 12 (`fit`)
def _schedule_epoch(scheduler, config: TrainConfig, val: dict) -> None:
    """Step a per-epoch scheduler (ReduceLROnPlateau reads the validation loss)."""
    if scheduler is None or config.scheduler_interval != "epoch":
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val["loss"])
    else:
        scheduler.step()


def _epoch_line(epoch: int, train: dict, val: dict, improved: bool) -> str:
    """One line per epoch: losses, val metrics, time and speed; * marks the best."""
    shown = "".join(f" | val {k} {v:.4g}" for k, v in val.items() if k != "items")
    return (f"epoch {epoch:2d} | train loss {train['loss']:.4f}{shown} | "
            f"{train['seconds']:.0f} s, {train['items_per_s']:,.0f} items/s"
            f"{' *' if improved and val else ''}")


# %% book/appendix_training.md, code cell 13 (`fit`)
def _finish(path: Path | None, model: nn.Module, settings: dict, run: _Run) -> dict:
    """Restore the best weights, complete the history, save the finished run."""
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.eval()  # every way out of fit leaves the model ready to use
    h = run.history
    h["finished"] = True  # and by what: a loaded run still names its training run
    h["trained_by"] = {"commit": git_commit(), "torch": str(torch.__version__),
                       "device": device_name(model_device(model))}
    if h["best_epoch"] is not None:
        best = h["epoch"].index(h["best_epoch"])
        for key in [k for k in h if k.startswith("val_")]:
            h[f"best_{key}"] = h[key][best]
    env = init_distributed()
    if path is not None and env.is_main:
        save_checkpoint(path, model, settings, history=h, finished=True)
    if env.world_size > 1:
        dist.barrier()  # every process leaves with the checkpoint written
    return h


def _load_run(path: Path, model: nn.Module, settings: dict, optimizer,
              device: torch.device) -> dict:
    """load_checkpoint for fit; a refusal also says how to train anew instead."""
    try:
        return load_checkpoint(path, model, settings, optimizer, map_location=device)
    except CheckpointError as err:
        raise CheckpointError(f"{err}. To train with these settings, delete {path} "
                              "or pass another checkpoint path") from None


# %% book/appendix_training.md, code cell 14 (`fit`)
def fit(model: nn.Module, step: Step, batches: Iterable, *,
        evaluate: Evaluate | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler=None, config: TrainConfig | None = None,
        checkpoint: str | Path | None = None, settings: dict | None = None) -> dict:
    """Train `model` by `step` on `batches`; resumable at `checkpoint`; the history."""
    config = config or TrainConfig()
    env, device = init_distributed(), model_device(model)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler(
        enabled=autocast_dtype(device, config.amp) == torch.float16)
    settings = flat_settings({"train": config.settings(), "step": describe_step(step),
                              "optimizer": describe_optimizer(optimizer, scheduler),
                              **(settings or {})})
    run, data, say = _Run(), _data_state(batches), config.verbose and env.is_main
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and path.exists():
        state = _load_run(path, model, settings, optimizer, device)
        if state.get("finished"):
            if say:
                print(f"loaded the finished run {path.name} "
                      f"(best epoch {state['history']['best_epoch']})")
            model.eval()  # ready to use, as after a run trained here
            return state["history"] | {"loaded_from": str(path)}
        _resume(state, run, scheduler, scaler, data)
        if say:
            print(f"resuming {path.name} after epoch {run.done}")
    elif say:  # say where it looked: training may take minutes
        where = ("no checkpoint asked for: nothing is saved" if path is None else
                 f"no checkpoint at {path}: it is written there after every epoch")
        epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
        print(f"training for up to {epochs} ({where})")
    trained = DistributedDataParallel(model) if env.world_size > 1 else model
    last = config.epochs if config.stop_after is None else min(
        config.epochs, run.done + config.stop_after)
    while run.done < last and not run.history["stopped_early"]:
        epoch = run.done + 1
        train = train_epoch(trained, step, batches, optimizer, config,
                            scheduler, scaler)
        val = {} if evaluate is None else evaluate(model)
        _schedule_epoch(scheduler, config, val)
        improved = run.record(epoch, train, val)
        if improved and evaluate is not None:
            run.best_state = copy.deepcopy(model.state_dict())
        if say:
            print(_epoch_line(epoch, train, val, improved))
        run.history["stopped_early"] = (config.patience is not None
                                        and run.bad_epochs >= config.patience)
        rng = _all_rng_states() if path is not None else []  # every process joins
        if path is not None and env.is_main:  # resumable after every epoch
            _save_epoch(path, model, settings, run, optimizer, scheduler, scaler, data,
                        rng)
    if run.done < config.epochs and not run.history["stopped_early"]:
        if say:  # stop_after reached: the model keeps its last weights
            print(f"stopped after epoch {run.done} of {config.epochs}; "
                  "call again to go on")
        model.eval()
        return run.history | {"interrupted": True, "loaded_from": None}
    return _finish(path, model, settings, run) | {"loaded_from": None}


def items_per_second(history: dict) -> float:
    """A run's training throughput: items (tokens, images) over its training seconds."""
    return sum(history["items"]) / max(sum(history["seconds"]), 1e-9)


# %% book/appendix_training.md, code cell 17 (Many processes)
def process_share(batches: list) -> list:
    """This process's share of an epoch's batches under torchrun (all of them alone)."""
    env = distributed_env()
    if env.world_size == 1:
        return batches
    mine = DistributedSampler(range(len(batches)), num_replicas=env.world_size,
                              rank=env.rank, shuffle=False)
    return [batches[j] for j in mine]


# %% book/appendix_training.md, code cell 18 (Weights shipped with the book)
def weights_settings(model_settings: dict, **vocabs) -> dict:
    """What shipped weights are checked against: model settings, vocabulary digests."""
    return {"model": model_settings} | {name: v.digest() for name, v in vocabs.items()}


def save_shipped(path: str | Path, model: nn.Module, settings: dict) -> Path:
    """Write `model`'s weights to `path` in the compact 8-bit form; say how large."""
    path = save_compact(path, model, settings)
    print(f"wrote weights/{path.name}: {path.stat().st_size / 2**20:.1f} MiB")
    return path


def load_shipped(path: str | Path, model: nn.Module | None = None,
                 settings: dict | None = None, **vocabs) -> nn.Module | None:
    """`model` with the shipped weights at `path`, or None (saying why) if unusable.

    Without a model: the model the file names, ready (errors if it cannot be),
    after checking the vocabularies given (src_vocab=..., tgt_vocab=...).
    """
    path = Path(path)
    unknown = sorted(set(vocabs) - {"src_vocab", "tgt_vocab"})
    if unknown or not all(hasattr(v, "digest") for v in vocabs.values()):
        raise TypeError(f"load_shipped checks src_vocab= and tgt_vocab=, each a "
                        f"Vocab; got {', '.join(unknown) or 'something else'}")
    if vocabs and model is not None:
        raise TypeError("give the vocabularies without a model (the file's settings "
                        "check them), or a model with its settings, not both")
    if model is None:
        if not path.is_file():
            raise FileNotFoundError(f"no weights file at {path}")
        if vocabs:
            saved = torch.load(path, map_location="cpu", weights_only=True)["config"]
            wrong = [name for name, vocab in vocabs.items()
                     if saved.get(name) != vocab.digest()]
            if wrong:
                raise CheckpointError(f"{path} was trained with other vocabularies "
                                      f"than the {', '.join(wrong)} given")
        return load_model(path)
    if not path.exists():
        print(f"no weights/{path.name}")
        return None
    try:
        return load_compact(path, model, settings)
    except CheckpointError as err:
        print("refused:", str(err).replace(str(path), f"weights/{path.name}")[:400])
        return None
