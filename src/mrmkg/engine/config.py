"""The training configuration: :class:`TrainConfig` (with :class:`OptimConfig`), read from YAML plus
``--set`` overrides by :func:`load_train_config`. Every field carries its help text (``mrmkg train
--list-fields``); bad values raise InputError naming the file, line and field."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from mrmkg.yamlconfig import Source, apply_overrides, from_dict, load_yaml

__all__ = ["OptimConfig", "TrainConfig", "load_train_config"]


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
        "help": "What to train: a registered task name (mars, markg, scienceqa, stage1, demo, demo_stage1, qa, or a "
                "plugin's, registered through the 'mrmkg.tasks' entry-point group)."})
    task_args: dict = field(default_factory=dict, metadata={
        "help": "Options of the task (e.g. data paths, prompt variant); validated by the task's own config."})
    model: dict = field(default_factory=dict, metadata={
        "help": "Model options (MRMKGConfig fields for mars/markg); validated by the model's config."})
    init_from: str | None = field(default=None, metadata={
        "help": "Start from the trainable weights of this checkpoint or run folder (e.g. stage 1's output "
                "for stage 2). Parameters are matched by name and shape; the rest keep their init."})
    init_skip: list[str] = field(default_factory=list, metadata={
        "help": "Name prefixes of init_from's tensors NOT to load (e.g. 'entity_head.' to carry stage 1's "
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
    log_with: Literal["auto", "tensorboard", "wandb", "mlflow", "none"] = field(default="auto", metadata={
        "help": "Experiment tracker (accelerate's log_with), writing into the run folder's logs/: training loss, "
                "learning rate and samples/s at every logged step (log_every), numeric evaluation metrics at every "
                "evaluation. auto = tensorboard when it is installed, else none; wandb runs offline (no network); "
                "none = no tracking. Tracking never changes the losses or metrics."})
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


def load_train_config(path: str | Path | None = None, overrides: Sequence[str] = (), sections: bool = False,
                      **fields) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (optional), then ``--set key=value`` overrides, then
    keyword fields (typer options). Unknown or ill-typed fields raise InputError with file:line.

    ``sections``: also check the ``model`` section against :class:`~mrmkg.model.config.MRMKGConfig`
    and ``task_args`` against the task's ``config_class``, with file:line (names, types, finite
    numbers, bounds, choices). That imports the task (and torch): ``mrmkg train`` asks for it before
    anything loads; training checks the same when the task and model are built."""
    if path is not None:
        data, src = load_yaml(path)
    else:
        data, src = {}, Source()
    apply_overrides(data, list(overrides), src)
    for k, v in fields.items():
        if v is not None:
            data[k] = v
            src.overridden.add(k)
    cfg = from_dict(TrainConfig, data, src)
    if sections:
        check_sections(cfg, src)
    return cfg


def check_sections(cfg: TrainConfig, src: Source | None = None) -> None:
    """The ``model`` and ``task_args`` sections of ``cfg`` as the model and the task will read them (see
    :func:`load_train_config`); a task without a ``config_class`` keeps its own checks."""
    from mrmkg.model.config import MRMKGConfig
    from mrmkg.tasks.registry import get_task

    src = src or Source()
    from_dict(MRMKGConfig, cfg.model, src, prefix="model.").validate(src.path)
    config_class = getattr(get_task(cfg.task), "config_class", None)
    if config_class is not None:
        from_dict(config_class, cfg.task_args, src, prefix="task_args.")

