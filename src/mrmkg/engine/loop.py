"""The training loop, :func:`train`: one optimizer step after another over the task's examples, on
accelerate; see :mod:`mrmkg.engine` for what it guarantees."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mrmkg.engine.checkpoint import latest_checkpoint, restore_checkpoint, save_checkpoint, save_trainable_only, \
    weights_digest, write_final
from mrmkg.engine.config import TrainConfig
from mrmkg.engine.data import DataPosition, EpochSampler
from mrmkg.engine.evaluate import evaluate_into_history, make_summary, numeric_metrics, peak_rss_mb, print_summary
from mrmkg.engine.init_from import load_init
from mrmkg.engine.optim import build_optimizer, build_scheduler
from mrmkg.engine.task import Objective, Task
from mrmkg.errors import InputError
from mrmkg.fileio import atomic_write_json
from mrmkg.malloc import tune_malloc
from mrmkg.tasks.registry import make_task

__all__ = ["TrainResult", "train"]


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


def train(config: TrainConfig, task: Task | None = None, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train ``task`` (default: the registered task ``config.task``) as ``config`` says.

    ``resume``: continue from the newest checkpoint in ``output_dir`` (start fresh if there is none).
    ``overwrite``: allow starting fresh in an ``output_dir`` that already holds checkpoints.
    """
    from accelerate.utils import gather_object, set_seed

    if not 0 <= config.seed < 2**32:  # what numpy (seeded by accelerate's set_seed) accepts
        raise InputError(f"field 'seed': expected 0 <= seed < 2**32, got {config.seed}")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    if config.tune_malloc:
        tune_malloc()
    out = Path(config.output_dir)
    ck = _checkpoint_to_resume(out, resume, overwrite)
    accelerator = _accelerator(config, clear_checkpoints=overwrite and not resume)
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process

    sharded = accelerator.distributed_type.value in ("FSDP", "DEEPSPEED")
    if sharded and (config.eval_at_end or config.eval_every):
        raise InputError("fields 'eval_at_end' / 'eval_every': evaluation runs on the main process alone, which a "
                         "sharded (FSDP/DeepSpeed) model cannot do; set eval_at_end=false and eval_every=0 and "
                         "evaluate the final checkpoint afterwards (e.g. mrmkg scienceqa eval --device auto)")
    task = task or make_task(config)
    if hasattr(task, "llm_device") and accelerator.device.type != "cpu" and not sharded:
        # each process loads the frozen LLM straight onto its own GPU (no full copy in host memory first);
        # under FSDP the plugin places and shards it instead
        task.llm_device = str(accelerator.device)
    set_seed(config.seed)
    model = task.build_model()
    if world > 1 and getattr(getattr(model, "config", None), "device_map", None) == "auto":
        raise InputError("field 'model.device_map': auto spreads one model over the GPUs of one process; under "
                         f"{world} processes each needs its own copy (use model.device_map=none, or shard the frozen "
                         "model with FSDP: configs/accelerate/fsdp.yaml)")
    init = load_init(model, config.init_from, config.init_skip) if config.init_from and ck is None else None
    if init and main:
        print(init.line())
    examples = task.train_examples()
    sampler = EpochSampler(len(examples), config.seed, config.batch_size, config.grad_accum, rank, world)
    position = DataPosition(sampler, _total_steps(config, sampler))
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, position.total_steps)
    objective, optimizer, scheduler = accelerator.prepare(Objective(model, getattr(task, "loss", None)), optimizer,
                                                          scheduler)
    save_trainable_only(accelerator, model)
    if ck is not None:
        restore_checkpoint(accelerator, ck, position)
        if main:
            print(f"resumed from {ck} at step {position.global_step}")
    else:
        set_seed(config.seed, device_specific=True)  # seed + rank

    bar = _progress_bar(config, position) if main else None
    start_step, t0 = position.global_step, time.perf_counter()
    logged_step, logged_t = start_step, t0
    objective.train()
    while position.global_step < position.total_steps:
        loss = _step(accelerator, objective, optimizer, scheduler, task, examples, position.micro_batches(), config)
        records = len(position.history)
        position.step_done(loss, scheduler.get_last_lr()[0], config.log_every)
        step, last = position.global_step, position.global_step == position.total_steps
        if len(position.history) > records:  # a logged step: the tracker gets the record the history got
            now, rec = time.perf_counter(), position.history[-1]
            rate = (step - logged_step) * sampler.examples_per_step / max(now - logged_t, 1e-9)
            accelerator.log({"train/loss": rec["loss"], "train/lr": rec["lr"], "train/samples_per_s": rate}, step=step)
            logged_step, logged_t = step, now
        if bar is not None:
            bar.update(1)
            rate = (step - start_step) * sampler.examples_per_step / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.1f}")
        paused = time.perf_counter()
        if config.eval_every and step % config.eval_every == 0 and not last:
            evaluate_into_history(accelerator, task, model, objective, position, config)
        if config.checkpoint_every and step % config.checkpoint_every == 0 and not last:
            save_checkpoint(accelerator, out, position.state_dict(), config)
        logged_t += time.perf_counter() - paused  # samples/s counts training time, not evaluation or saving
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    samples = (position.global_step - start_step) * sampler.examples_per_step

    digests, rss = gather_object([weights_digest(model)]), gather_object([peak_rss_mb()])
    state = {**position.state_dict(), "weights_sha256": digests}
    save_checkpoint(accelerator, out, state, config)
    metrics: dict = {}
    if main:
        if config.eval_at_end:
            metrics = task.evaluate(model, config.eval_batch_size)
            accelerator.log(numeric_metrics(metrics, "eval/"), step=position.global_step)
        write_final(out / "final", model, config, state, metrics)
        summary = make_summary(config, position, world, samples, seconds, rss, metrics, digests,
                               init.summary() if init else None)
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_json(out / "summary.json", summary)
        if config.progress:
            print_summary(summary)
    for tracker in accelerator.trackers:  # flush and close the trackers' files (end_training would also
        tracker.finish()                  # destroy the process group, which later runs in this process reuse)
    accelerator.wait_for_everyone()
    return TrainResult(out, position.global_step, samples, seconds, samples / max(seconds, 1e-9), max(rss),
                       position.last_loss, metrics, position.history, digests)


def _step(accelerator, objective, optimizer, scheduler, task: Task, examples, micro_batches, config: TrainConfig) -> float:
    """One optimizer step over ``micro_batches`` (this rank's example indices for each); returns the
    step's loss, averaged over micro-batches and ranks."""
    from accelerate.utils import send_to_device

    step_loss = torch.zeros((), device=accelerator.device)
    for m, idx in enumerate(micro_batches):
        batch = send_to_device(task.collate([examples[int(i)] for i in idx]), accelerator.device)
        sync = m == len(micro_batches) - 1  # DDP: all-reduce the gradients once, after the last micro-batch
        with contextlib.nullcontext() if sync else accelerator.no_sync(objective):
            with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                loss = objective(batch)
            accelerator.backward(loss / len(micro_batches))
        step_loss += loss.detach().float() / len(micro_batches)
    if config.optim.max_grad_norm > 0:
        accelerator.clip_grad_norm_(objective.parameters(), config.optim.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(accelerator.reduce(step_loss, "mean")) if accelerator.num_processes > 1 else float(step_loss)


def _progress_bar(config: TrainConfig, position: DataPosition):
    """A tqdm bar over the run's optimizer steps (None when ``progress`` is off)."""
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=position.total_steps, initial=position.global_step, desc=f"train {config.task}", unit="step",
                dynamic_ncols=True)


def _checkpoint_to_resume(out: Path, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to continue from (``resume``), or None; refuses to start afresh over
    checkpoints unless ``overwrite``."""
    ck = latest_checkpoint(out)
    if ck is not None and not resume and not overwrite:
        raise InputError("output folder already holds checkpoints; pass --resume to continue or --overwrite "
                         "to start again", path=out)
    return ck if resume else None


def _accelerator(config: TrainConfig, clear_checkpoints: bool):
    """The run's Accelerator (and, with ``clear_checkpoints``, the output folder's old checkpoints
    deleted by the main process before any rank goes on)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    # Mixed precision is our own torch.autocast rather than Accelerator(mixed_precision=...): the
    # accelerate state is a process-wide singleton that refuses a second precision in one process
    # (tests, notebooks), and autocast around forward is all bf16 needs (weights stay fp32).
    # The schedule counts optimizer steps: accelerate's default would step it once per process.
    _match_accelerator_device(config.cpu)
    tracker = resolve_tracker(config.log_with)
    logs = Path(config.output_dir) / "logs"
    if tracker == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")  # no network at run time; `wandb sync` uploads later
        os.environ.setdefault("WANDB_DIR", str(logs))
    accelerator = Accelerator(
        cpu=config.cpu, step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)],
        log_with=None if tracker == "none" else tracker,
        project_config=None if tracker == "none" else ProjectConfiguration(project_dir=str(config.output_dir),
                                                                           logging_dir=str(logs)),
    )
    checkpoints = Path(config.output_dir) / "checkpoints"
    if accelerator.is_main_process and clear_checkpoints and checkpoints.is_dir():
        shutil.rmtree(checkpoints)
    accelerator.wait_for_everyone()
    if tracker != "none":
        # one tracker run per training run (resumed runs add files to the same folder)
        init = {"wandb": {"dir": str(logs)}} if tracker == "wandb" else {}
        accelerator.init_trackers("mrmkg", init_kwargs=init)  # TensorBoard: RUN/logs/mrmkg/
    return accelerator


def resolve_tracker(log_with: str) -> str:
    """The tracker ``log_with`` names, checked: ``auto`` is tensorboard when it is importable, else
    none; a named tracker that is not installed is an InputError (not a silent run without curves)."""
    if log_with == "none":
        return "none"
    packages = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
    name = "tensorboard" if log_with == "auto" else log_with
    if importlib.util.find_spec(packages[name]) is None:
        if log_with == "auto":
            return "none"
        raise InputError(f"field 'log_with': {name!r} is not installed (pip install {packages[name]}), "
                         "or set log_with=none")
    return name


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


def _total_steps(config: TrainConfig, sampler: EpochSampler) -> int:
    """Optimizer steps of the run: ``epochs`` epochs, capped by ``max_steps``."""
    if sampler.steps_per_epoch == 0:
        raise InputError(f"{sampler.n} training examples are fewer than one optimizer step (batch_size "
                         f"{config.batch_size} x processes {sampler.world} x grad_accum {config.grad_accum})")
    total = config.epochs * sampler.steps_per_epoch
    return min(total, config.max_steps) if config.max_steps else total
