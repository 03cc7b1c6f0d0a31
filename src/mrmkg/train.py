"""The training engine: one loop for stage 1 (MarKG pretraining) and stage 2 (a task), on accelerate.

What it trains is a *task* (see :class:`Task`): it builds the model, lists the training examples,
collates them into batches and evaluates. The model only has to follow a small protocol:
``forward(batch)`` returns an object with ``.loss`` (a scalar tensor), the parameters to train are
those with ``requires_grad`` (or ``trainable_parameters()`` when the model has it), and it may
offer ``save_pretrained(dir)``.

Guarantees, and how they are kept:

* **Same seed, same result.** The model is built right after seeding; the data order of epoch
  ``e`` is a permutation drawn from its own generator seeded with ``(seed, e)``, independent of
  every other random draw; the training RNGs (python, numpy, torch) are seeded with
  ``seed + rank``.
* **Exact resume.** A checkpoint (every ``checkpoint_every`` optimizer steps and at the end) holds
  the trainable weights (safetensors), the optimizer and scheduler states, every rank's RNG states
  and the data position (epoch, step in epoch). It is written with :func:`mrmkg.fileio.atomic_dir`,
  so a run killed at any moment (SIGKILL included) leaves only complete checkpoints, and
  ``resume=True`` continues from the newest one as if nothing had happened: same weights, same
  losses, same metrics (bit for bit on CPU with the same thread count).
* **DDP.** The same entry point runs under ``accelerate launch --num_processes K``. Each optimizer
  step consumes ``batch_size * K * grad_accum`` examples of the epoch permutation; rank ``r`` takes
  its slice of each global micro-batch. An epoch's incomplete last optimizer step is dropped
  (``drop_last``) so every step sees the same number of examples.

Batches are collated by the task on every rank (no DataLoader workers: the 2-core target machine
has nothing to spare, and it keeps the data position a pair of integers).
"""
from __future__ import annotations

import json
import math
import random
import re
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
import yaml

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_dir, atomic_write_json, atomic_write_text, sha256_bytes
from mrmkg.malloc import tune_malloc
from mrmkg.yamlconfig import Source, apply_overrides, from_dict, load_yaml, to_dict

__all__ = [
    "OptimConfig", "TrainConfig", "Task", "load_train_config", "make_task", "train",
    "latest_checkpoint", "to_device", "trainable_state", "load_trainable_state", "EpochSampler", "TrainResult",
]


# ---------------------------------------------------------------------------------- configuration
@dataclass
class OptimConfig:
    lr: float = field(default=1e-4, metadata={"ge": 0, "help": "Peak learning rate of AdamW."})
    weight_decay: float = field(default=0.01, metadata={"ge": 0,
        "help": "AdamW weight decay (paper: 0.01), applied to matrices and embeddings; biases and norm "
                "weights (1-d parameters) are not decayed."})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"ge": 0, "lt": 1, "help": "AdamW betas."})
    eps: float = field(default=1e-8, metadata={"ge": 0, "help": "AdamW epsilon."})
    scheduler: str = field(default="linear", metadata={
        "help": "Learning-rate schedule after warm-up: any name transformers.get_scheduler knows "
                "(linear, cosine, constant_with_warmup, ...)."})
    warmup_steps: int = field(default=0, metadata={"ge": 0, "help": "Warm-up optimizer steps (overrides warmup_ratio when > 0)."})
    warmup_ratio: float = field(default=0.0, metadata={"ge": 0, "le": 1, "help": "Warm-up as a fraction of all optimizer steps."})
    max_grad_norm: float = field(default=1.0, metadata={"ge": 0, "help": "Clip the global gradient norm to this (0 = no clipping)."})
    fused: bool = field(default=False, metadata={
        "help": "Use torch's fused AdamW kernel (one pass per tensor): ~5x faster optimizer steps on CPU for large "
                "embedding tables (MARS: 14.5M trainable weights, ~50 -> ~11 ms a step); same update up to float "
                "rounding. Off by default so that earlier runs reproduce bit for bit."})


@dataclass
class TrainConfig:
    task: str = field(default="mars", metadata={
        "help": "What to train: a registered task name (mars, markg, scienceqa, stage1, demo, demo_stage1, or a "
                "plugin's, registered through the 'mrmkg.tasks' entry-point group)."})
    task_args: dict = field(default_factory=dict, metadata={
        "help": "Options of the task (e.g. data paths, prompt variant); validated by the task's own config."})
    model: dict = field(default_factory=dict, metadata={
        "help": "Model options (MRMKGConfig fields for mars/markg); validated by the model's config."})
    init_from: str | None = field(default=None, metadata={
        "help": "Start from the trainable weights of this checkpoint or run folder (e.g. stage 1's output "
                "for stage 2). Parameters are matched by name and shape; the rest keep their init."})
    init_skip: list[str] = field(default_factory=list, metadata={
        "help": "Name prefixes of init_from's tensors NOT to load (e.g. 'mrmkg.entity_head.' to carry stage 1's "
                "graph encoder and adapters into stage 2 but keep the entity table's name-token init)."})
    output_dir: str = field(default="runs/default", metadata={"help": "Run folder: checkpoints/, final/, metrics.json."})
    seed: int = field(default=0, metadata={"ge": 0, "lt": 2**32, "help": "Seed of model init, data order and training RNGs."})
    epochs: int = field(default=3, metadata={"ge": 1, "help": "Passes over the training examples (paper: 3)."})
    max_steps: int = field(default=0, metadata={"ge": 0,
        "help": "Stop after this many optimizer steps (0 = epochs decide). The schedule spans "
                "min(max_steps, epochs * steps_per_epoch)."})
    batch_size: int = field(default=4, metadata={"ge": 1, "help": "Examples per micro-batch per process (paper: 4 for MARS, 8 for MarKG)."})
    grad_accum: int = field(default=1, metadata={"ge": 1, "help": "Micro-batches per optimizer step (gradient accumulation)."})
    precision: Literal["bf16", "fp32"] = field(default="bf16", metadata={
        "help": "bf16: forward under torch.autocast(bfloat16) (weights and optimizer stay fp32); fp32: none."})
    cpu: bool = field(default=True, metadata={"help": "Run on CPU even when a GPU is visible."})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"help": "Optimizer and schedule."})
    checkpoint_every: int = field(default=0, metadata={"ge": 0,
        "help": "Write a resumable checkpoint every this many optimizer steps (0 = only at the end)."})
    keep_checkpoints: int = field(default=2, metadata={"ge": 1, "help": "Keep the newest this many step checkpoints (>= 1)."})
    eval_every: int = field(default=0, metadata={"ge": 0, "help": "Evaluate on the task's dev split every this many steps (0 = only at the end)."})
    eval_at_end: bool = field(default=True, metadata={"help": "Evaluate on the task's dev split after training."})
    eval_batch_size: int = field(default=16, metadata={"ge": 1, "help": "Examples per batch when evaluating."})
    log_every: int = field(default=10, metadata={"ge": 1, "help": "Record the mean training loss every this many steps."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar (main process only)."})
    num_threads: int = field(default=0, metadata={"ge": 0, "help": "torch threads per process (0 = leave as set by OMP_NUM_THREADS)."})
    tune_malloc: bool = field(default=True, metadata={
        "help": "glibc only: keep freed memory in the process instead of faulting each step's buffers in anew "
                "(mrmkg.malloc; ~40 ms of system time less per MARS step)."})
    find_unused_parameters: bool = field(default=True, metadata={
        "help": "DDP only: allow trainable parameters that get no gradient in a step (e.g. the alignment "
                "head when a batch has no image node)."})

    def __post_init__(self):
        for name in ("epochs", "batch_size", "grad_accum", "keep_checkpoints", "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "checkpoint_every", "eval_every", "num_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def load_train_config(path: str | Path | None = None, overrides: Sequence[str] = (), **fields) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (optional), then ``--set key=value`` overrides, then
    keyword fields (typer options). Unknown or ill-typed fields raise InputError with file:line."""
    if path is not None:
        data, src = load_yaml(path)
    else:
        data, src = {}, Source()
    apply_overrides(data, list(overrides), src)
    for k, v in fields.items():
        if v is not None:
            data[k] = v
            src.overridden.add(k)
    return from_dict(TrainConfig, data, src)


# ---------------------------------------------------------------------------------- task protocol
@runtime_checkable
class Task(Protocol):
    """What the engine trains. ``from_config(args, config)`` builds one from ``task_args``."""

    def build_model(self) -> torch.nn.Module:
        """A fresh model (called right after seeding, identically on every rank)."""

    def train_examples(self) -> Sequence[Any]:
        """The training examples (indexable, fixed order)."""

    def collate(self, examples: list[Any]) -> Any:
        """A batch for ``model(batch)``."""

    def evaluate(self, model: torch.nn.Module, batch_size: int) -> dict[str, float]:
        """Metrics on the task's dev split (main process only)."""


def make_task(config: TrainConfig) -> Task:
    """Instantiate ``config.task`` (a name in :mod:`mrmkg.tasks.registry`) with ``task_args``."""
    from mrmkg.tasks.registry import make_task as _make

    return _make(config)


# ---------------------------------------------------------------------------------- data order
class EpochSampler:
    """Deterministic, resumable data order: epoch ``e`` is a permutation seeded by ``(seed, e)``.

    One optimizer step = ``grad_accum`` micro-batches; one micro-batch = ``batch_size`` examples
    per rank, i.e. ``batch_size * world`` consecutive entries of the permutation, of which rank
    ``r`` takes entries ``[r * batch_size, (r + 1) * batch_size)``.
    """

    def __init__(self, n: int, seed: int, batch_size: int, grad_accum: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.batch_size, self.grad_accum = n, seed, batch_size, grad_accum
        self.rank, self.world = rank, world
        self.examples_per_step = batch_size * world * grad_accum
        self.steps_per_epoch = n // self.examples_per_step

    def permutation(self, epoch: int) -> np.ndarray:
        g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + int(epoch))
        return torch.randperm(self.n, generator=g).numpy()

    def micro_batches(self, epoch: int, step: int) -> list[np.ndarray]:
        """This rank's example indices for each micro-batch of optimizer step ``step`` of ``epoch``."""
        perm = self.permutation(epoch)
        out = []
        for m in range(self.grad_accum):
            start = (step * self.grad_accum + m) * self.batch_size * self.world + self.rank * self.batch_size
            out.append(perm[start : start + self.batch_size])
        return out


# ---------------------------------------------------------------------------------- state helpers
def _trainable_named(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of the trainable parameters (detached contiguous copies, fp32 as trained)."""
    return {n: p.detach().contiguous().clone() for n, p in _trainable_named(model)}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> dict:
    """Copy ``state`` into the model's parameters by name. ``strict``: names and shapes must match
    the trainable set exactly. Returns ``{"loaded": [...], "missing": [...], "skipped": [...]}``."""
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    loaded, skipped = [], []
    with torch.no_grad():
        for name, t in state.items():
            p = params.get(name)
            if p is None or tuple(p.shape) != tuple(t.shape):
                skipped.append(name)
                continue
            p.copy_(t.to(p.dtype))
            loaded.append(name)
    missing = sorted(trainable - set(loaded))
    if strict and (missing or skipped):
        raise InputError(f"checkpoint does not match the model: missing {missing[:5]}, "
                         f"unexpected or mis-shaped {skipped[:5]}")
    return {"loaded": loaded, "missing": missing, "skipped": skipped}


def _weights_digest(model: torch.nn.Module) -> str:
    h = []
    for n, p in _trainable_named(model):
        h.append(n.encode() + p.detach().float().cpu().contiguous().numpy().tobytes())
    return sha256_bytes(b"".join(h))


def _rng_state() -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        **({"cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {}),   # this rank's device
    }


def _set_rng_state(s: dict) -> None:
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))
    n = s["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state(s["cuda"])


def _match_accelerator_device(cpu: bool) -> None:
    """accelerate keeps its device in a process-wide singleton: once one run chose the GPU, a ``cpu: true``
    run in the same process (a notebook, a test session) is refused, and once one chose the CPU a GPU
    run silently stays there. In a single process, start that state afresh when the device must change
    (never under a launcher, whose processes share it)."""
    from accelerate.state import AcceleratorState, PartialState

    if not PartialState._shared_state:
        return
    state = PartialState()
    on_cpu = state.device.type == "cpu"
    if state.num_processes == 1 and on_cpu != (cpu or not torch.cuda.is_available()):
        AcceleratorState._reset_state(reset_partial_state=True)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_STEP_DIR = re.compile(r"^step-(\d+)$")


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete step checkpoint under ``<output_dir>/checkpoints`` (or None)."""
    d = Path(output_dir) / "checkpoints"
    if not d.is_dir():
        return None
    best = None
    for p in d.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / "trainer_state.json").is_file():
            if best is None or int(m.group(1)) > best[0]:
                best = (int(m.group(1)), p)
    return None if best is None else best[1]


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; ``metrics`` only filled on the main process)."""

    output_dir: Path
    global_step: int
    samples: int
    seconds: float
    samples_per_s: float
    peak_rss_mb: float
    final_loss: float | None
    metrics: dict
    history: list
    weights_sha256: list[str]


# ---------------------------------------------------------------------------------- the loop
def _build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for _, p in _trainable_named(model):
        (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=cfg.fused or None)


def _save_checkpoint(path: Path, accelerator, model: torch.nn.Module, optimizer, scheduler, state: dict, config: TrainConfig) -> None:
    """Gather every rank's RNG state; the main process writes the folder atomically."""
    from accelerate.utils import gather_object
    from safetensors.torch import save_file

    rngs = gather_object([_rng_state()]) if accelerator.num_processes > 1 else [_rng_state()]
    if accelerator.is_main_process:
        with atomic_dir(path) as tmp:
            save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rngs},
                       tmp / "optimizer.pt")
            atomic_write_text(tmp / "train_config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
            atomic_write_json(tmp / "trainer_state.json", state)
    accelerator.wait_for_everyone()


def _prune_checkpoints(output_dir: Path, keep: int) -> None:
    d = output_dir / "checkpoints"
    steps = sorted((int(m.group(1)), p) for p in d.iterdir() if (m := _STEP_DIR.match(p.name)))
    for _, p in steps[:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def _load_init(model: torch.nn.Module, src: str, skip: Sequence[str] = ()) -> dict:
    """Load ``src``'s trainable weights into ``model`` by name and shape, except names starting with
    a prefix in ``skip`` (they keep their init; listed under ``"excluded"`` as well as ``"missing"``)."""
    from safetensors.torch import load_file

    p = Path(src)
    candidates = [p / "trainable.safetensors", p / "final" / "trainable.safetensors"]
    ck = latest_checkpoint(p)
    if ck is not None:
        candidates.append(ck / "trainable.safetensors")
    for c in candidates:
        if c.is_file():
            state = load_file(str(c))
            dropped = [n for n in state if n.startswith(tuple(skip))]
            report = load_trainable_state(model, {n: t for n, t in state.items() if n not in dropped}, strict=False)
            return {**report, "excluded": dropped}
    raise InputError("field 'init_from': no trainable.safetensors in this folder, its final/ or its checkpoints/",
                     path=p)


def train(config: TrainConfig, task: Task | None = None, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train ``task`` (default: :func:`make_task`) as ``config`` says; see the module docstring.

    ``resume``: continue from the newest checkpoint in ``output_dir`` (start fresh if there is none).
    ``overwrite``: allow starting fresh in an ``output_dir`` that already holds checkpoints.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, gather_object
    from transformers import get_scheduler

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    if config.tune_malloc:
        tune_malloc()
    out = Path(config.output_dir)
    ck = latest_checkpoint(out) if resume else None
    if not resume and latest_checkpoint(out) is not None and not overwrite:
        raise InputError("output folder already holds checkpoints; pass --resume to continue or --overwrite "
                         "to start again", path=out)

    # Mixed precision is our own torch.autocast rather than Accelerator(mixed_precision=...): the
    # accelerate state is a process-wide singleton that refuses a second precision in one process
    # (tests, notebooks), and autocast around forward is all bf16 needs (weights stay fp32).
    _match_accelerator_device(config.cpu)
    accelerator = Accelerator(
        cpu=config.cpu,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)],
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    main = accelerator.is_main_process
    if main and not resume and overwrite and (out / "checkpoints").is_dir():
        shutil.rmtree(out / "checkpoints")
    accelerator.wait_for_everyone()

    task = task or make_task(config)
    _seed_all(config.seed)
    model = task.build_model()
    if config.init_from and ck is None:
        report = _load_init(model, config.init_from, config.init_skip)
        if main:
            print(f"init_from {config.init_from}: loaded {len(report['loaded'])} tensors, "
                  f"kept init for {len(report['missing'])} (excluded by init_skip: {len(report['excluded'])}), "
                  f"skipped {len(report['skipped'])}")
    examples = task.train_examples()
    sampler = EpochSampler(len(examples), config.seed, config.batch_size, config.grad_accum, rank, world)
    if sampler.steps_per_epoch == 0:
        raise InputError(f"{len(examples)} training examples are fewer than one optimizer step "
                         f"(batch_size {config.batch_size} x processes {world} x grad_accum {config.grad_accum})")
    total_steps = config.epochs * sampler.steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    optimizer = _build_optimizer(model, config.optim)
    warmup = config.optim.warmup_steps or int(math.ceil(config.optim.warmup_ratio * total_steps))
    try:
        scheduler = get_scheduler(config.optim.scheduler, optimizer, num_warmup_steps=warmup,
                                  num_training_steps=total_steps)
    except (ValueError, KeyError) as e:
        raise InputError(f"field 'optim.scheduler': {e}") from None
    inner = model  # the task's model: what is saved, evaluated and restored
    model, optimizer = accelerator.prepare(_LossOnly(inner, task), optimizer)

    global_step, history, loss_acc, loss_n = 0, [], 0.0, 0
    if ck is not None:
        from safetensors.torch import load_file

        state = json.loads((ck / "trainer_state.json").read_text())
        if state["world_size"] != world:
            raise InputError(f"checkpoint was written by {state['world_size']} processes, this run has {world}; "
                             "the data position would not match", path=ck)
        load_trainable_state(inner, load_file(str(ck / "trainable.safetensors")))
        blob = torch.load(ck / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        _set_rng_state(blob["rng"][rank])
        global_step, history = state["global_step"], state["history"]
        loss_acc, loss_n = state["loss_acc"], state["loss_n"]
        if main:
            print(f"resumed from {ck} at step {global_step}")
    else:
        _seed_all(config.seed + rank)

    bar = None
    if config.progress and main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=global_step, desc=f"train {config.task}", unit="step", dynamic_ncols=True)

    def position(step: int) -> tuple[int, int]:
        return step // sampler.steps_per_epoch, step % sampler.steps_per_epoch

    def trainer_state() -> dict:
        epoch, in_epoch = position(global_step)
        return {"global_step": global_step, "epoch": epoch, "step_in_epoch": in_epoch,
                "samples": global_step * sampler.examples_per_step, "total_steps": total_steps,
                "steps_per_epoch": sampler.steps_per_epoch, "world_size": world, "history": history,
                "loss_acc": loss_acc, "loss_n": loss_n}

    metrics: dict = {}
    start_step, t0 = global_step, time.perf_counter()
    model.train()
    while global_step < total_steps:
        epoch, in_epoch = position(global_step)
        micro = sampler.micro_batches(epoch, in_epoch)
        step_loss = torch.zeros((), device=accelerator.device)
        for m, idx in enumerate(micro):
            batch = to_device(task.collate([examples[int(i)] for i in idx]), accelerator.device)
            sync = m == len(micro) - 1
            ctx = accelerator.no_sync(model) if (not sync and world > 1) else _nullcontext()
            with ctx:
                with torch.autocast(accelerator.device.type, dtype=torch.bfloat16,
                                    enabled=config.precision == "bf16"):
                    loss = model(batch)
                accelerator.backward(loss / len(micro))
            step_loss += loss.detach().float() / len(micro)
        if config.optim.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), config.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        global_step += 1
        mean_loss = float(accelerator.reduce(step_loss, "mean")) if world > 1 else float(step_loss)
        loss_acc, loss_n = loss_acc + mean_loss, loss_n + 1
        if global_step % config.log_every == 0 or global_step == total_steps:
            history.append({"step": global_step, "loss": loss_acc / loss_n, "lr": scheduler.get_last_lr()[0]})
            loss_acc, loss_n = 0.0, 0
        if bar is not None:
            dt = time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}",
                            samples_s=f"{(global_step - start_step) * sampler.examples_per_step / max(dt, 1e-9):.1f}")
        if config.eval_every and global_step % config.eval_every == 0 and global_step < total_steps:
            if main:
                m_eval = task.evaluate(inner, config.eval_batch_size)
                history.append({"step": global_step, "eval": m_eval})
                model.train()
            accelerator.wait_for_everyone()
        if config.checkpoint_every and global_step % config.checkpoint_every == 0 and global_step < total_steps:
            _save_checkpoint(out / "checkpoints" / f"step-{global_step:08d}", accelerator, inner, optimizer,
                             scheduler, trainer_state(), config)
            if main:
                _prune_checkpoints(out, config.keep_checkpoints)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    trained_samples = (global_step - start_step) * sampler.examples_per_step

    digests = gather_object([_weights_digest(inner)]) if world > 1 else \
        [_weights_digest(inner)]
    rss = gather_object([_peak_rss_mb()]) if world > 1 else [_peak_rss_mb()]
    final_state = trainer_state()
    final_state["weights_sha256"] = digests
    _save_checkpoint(out / "checkpoints" / f"step-{global_step:08d}", accelerator, inner, optimizer, scheduler,
                     final_state, config)
    if main:
        _prune_checkpoints(out, config.keep_checkpoints)
        unwrapped = inner
        if config.eval_at_end:
            metrics = task.evaluate(unwrapped, config.eval_batch_size)
        with atomic_dir(out / "final") as tmp:
            from safetensors.torch import save_file

            save_file(trainable_state(unwrapped), str(tmp / "trainable.safetensors"))
            if hasattr(unwrapped, "save_pretrained"):
                unwrapped.save_pretrained(tmp / "model")
            atomic_write_text(tmp / "train_config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
            atomic_write_json(tmp / "trainer_state.json", final_state)
            atomic_write_json(tmp / "metrics.json", metrics)
        summary = {
            "task": config.task, "seed": config.seed, "processes": world, "steps": global_step,
            "epochs": round(global_step / sampler.steps_per_epoch, 3), "samples_trained_now": trained_samples,
            "seconds": round(seconds, 3), "samples_per_s": round(trained_samples / max(seconds, 1e-9), 3),
            "peak_rss_mb": round(max(rss), 1), "final_loss": history[-1]["loss"] if history else None,
            "metrics": metrics, "weights_sha256": digests,
        }
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_json(out / "summary.json", summary)
        if config.progress:
            _print_summary(summary)
    accelerator.wait_for_everyone()
    return TrainResult(out, global_step, trained_samples, seconds, trained_samples / max(seconds, 1e-9),
                       max(rss), history[-1]["loss"] if history else None, metrics, history, digests)


def to_device(obj, device):
    """Move a batch to ``device``: tensors, objects with ``.to`` (e.g. ``MRMKGBatch``), and
    lists / tuples / dicts of them; anything else is returned as is. A no-op on CPU."""
    if torch.device(device).type == "cpu":
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if hasattr(obj, "to") and not isinstance(obj, str):
        return obj.to(device)
    return obj


class _LossOnly(torch.nn.Module):
    """Wraps the task's model so that DDP sees a tensor output: with ``find_unused_parameters``
    DDP walks the autograd graph from the tensors it finds in the output, and it cannot see
    inside an arbitrary output object (every parameter would be marked unused, then ready twice)."""

    def __init__(self, model: torch.nn.Module, task):
        super().__init__()
        self.model = model
        self.task_loss = getattr(task, "loss", None)

    def forward(self, batch):
        return self.task_loss(self.model, batch) if self.task_loss is not None else self.model(batch).loss


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"training summary ({summary['task']})", show_header=True)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k in ("seed", "processes", "steps", "epochs", "samples_trained_now", "seconds", "samples_per_s",
              "peak_rss_mb", "final_loss"):
        v = summary[k]
        t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    for k, v in (summary.get("metrics") or {}).items():
        t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    Console(stderr=True).print(t)
