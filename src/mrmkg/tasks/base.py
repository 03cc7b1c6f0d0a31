"""What every task shares: its config, the model it builds or loads, its training examples, its loss.

A task turns a dataset into :class:`~mrmkg.model.MRMKGExample` objects and back: it reads its files,
retrieves knowledge, writes prompts, and reads the model's output as answers. Subclasses set

* ``config_class``: the dataclass of ``task_args`` (fields with help text; ``mrmkg train
  --list-fields`` lists them);
* ``output``: ``"rank"`` (answers are scored candidates: entities, relations) or ``"generate"``
  (answers are generated text, e.g. ScienceQA's "The answer is (B)");

and implement ``make_train_examples`` (the training set), ``collate`` (a batch for the model),
``evaluate`` (dev metrics, through :class:`mrmkg.pipeline.Pipeline`), and, to answer a user's own
question (``mrmkg ask``, :class:`~mrmkg.pipeline.Pipeline`), ``query_examples``.

Everything else lives here once: ``from_config``, building the MR-MKG model from the config's
``model`` section over the task's defaults (one frozen LLM per process, shared by every model the
process builds: MR-MKG never changes it), loading a trained one, the example cache and the loss.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, Sequence

import torch

from mrmkg.encoders.registry import load_llm
from mrmkg.errors import InputError
from mrmkg.model import MRMKG, KGFeatures, MRMKGConfig
from mrmkg.tasks.knowledge import GraphContext
from mrmkg.yamlconfig import Source, from_dict

_LLMS: dict = {}  # (llm name, gradient checkpointing, dtype, placement) -> the frozen LLM this process loaded


def shared_llm(cfg: MRMKGConfig, device: str | None = None):
    """The frozen LLM ``cfg`` names, loaded once per process (the demo builds six models in a row) in
    ``cfg.llm_dtype``, spread by ``cfg.device_map == "auto"`` or else loaded straight onto ``device``
    (None: the CPU; the caller moves the model later). Gradient checkpointing changes the LLM's state,
    so it is part of the key, as are the dtype and the placement."""
    device_map = "auto" if cfg.device_map == "auto" else (None if device in (None, "cpu") else str(device))
    key = (cfg.llm, cfg.gradient_checkpointing, cfg.llm_dtype, device_map)
    if key not in _LLMS:
        _LLMS.clear()
        _LLMS[key] = load_llm(cfg.llm, dtype=cfg.llm_dtype, progress=False, device_map=device_map)
    return _LLMS[key]


class Task:
    """Base of every task (see the module docstring)."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type]
    output: ClassVar[str] = "rank"
    #: the ``task_args`` field naming the graph folder (``mrmkg eval --graph`` replaces it)
    graph_arg: ClassVar[str] = "graph"

    def __init__(self, config, model_args: dict | None = None, seed: int = 0):
        self.config = config
        self.model_args = dict(model_args or {})
        self.seed = seed
        self.model: MRMKG | None = None  # the model ``collate`` builds batches for
        #: where ``build_model`` loads the frozen LLM (None: the CPU); the engine sets its process's GPU here
        self.llm_device: str | None = None
        self._train: list | None = None

    @classmethod
    def from_config(cls, args: dict, train_config=None) -> "Task":
        """The task of a training config: ``task_args`` validated by ``config_class``."""
        cfg = from_dict(cls.config_class, args, Source(), prefix="task_args.")
        return cls(cfg, getattr(train_config, "model", {}), getattr(train_config, "seed", 0))

    # ------------------------------------------------------------------ the model
    def model_defaults(self) -> dict:
        """MRMKGConfig fields this task sets unless the config's ``model`` section does."""
        return {}

    def model_fixed(self) -> dict:
        """MRMKGConfig fields this task always sets (the ``model`` section cannot change them)."""
        return {}

    def model_config(self) -> MRMKGConfig:
        return MRMKGConfig.from_dict({"seed": self.seed, **self.model_defaults(), **self.model_args,
                                      **self.model_fixed()})

    def features(self) -> KGFeatures:
        """The frozen KG feature tables the graph encoder starts from."""
        raise NotImplementedError

    def image_token_dim(self) -> int | None:
        """Width of the visual tokens this task gives the model (None: no images)."""
        return None

    def vocabulary(self) -> tuple[list[str] | None, list[str] | None]:
        """Entity and relation names of the entity head's trainable tokens (None: no head)."""
        return None, None

    def build_model(self) -> MRMKG:
        """A fresh MR-MKG model (called by the engine right after seeding)."""
        cfg = self.model_config()
        entities, relations = self.vocabulary()
        model = MRMKG(cfg, shared_llm(cfg, self.llm_device), self.features(), image_token_dim=self.image_token_dim(),
                      entity_names=entities, relation_names=relations, report=False)
        return self.attach(model)

    def load_model(self, directory, dtype: str | None = None, device: str | None = None) -> MRMKG:
        """A model saved by ``save_pretrained``, with this task's feature tables. The frozen LLM loads in
        ``dtype`` (bf16/fp16/fp32 or their long names; None: the run's ``model.llm_dtype``) onto
        ``device`` (None or cpu: the CPU; ``auto``: spread by accelerate, ``model.device_map``); the
        trained weights stay float32 (a caller moves them to a single device, see ``Pipeline.from_pretrained``)."""
        from mrmkg.encoders.llm import short_dtype

        over = {}
        if dtype is not None:
            over["llm_dtype"] = short_dtype(dtype)
        over["device_map"] = "auto" if device == "auto" else "none"  # where it runs now, not where it was trained
        cfg = replace(self.model_config(), **over)
        llm = shared_llm(cfg, None if device == "auto" else device)
        model = MRMKG.from_pretrained(directory, llm=llm, features=self.features())
        model.config.llm_dtype, model.config.device_map = cfg.llm_dtype, cfg.device_map  # what this process runs
        return self.attach(model)

    def attach(self, model: MRMKG) -> MRMKG:
        """Make ``model`` the one this task collates for (tasks add what a model needs from the data)."""
        self.model = model
        return model

    # ------------------------------------------------------------------ training
    def make_train_examples(self) -> list:
        raise NotImplementedError

    def train_examples(self) -> list:
        """The training examples, built once."""
        if self._train is None:
            self._train = self.make_train_examples()
        return self._train

    def collate(self, examples: Sequence[Any]):
        """A batch of ``examples`` for the model: an ``MRMKGBatch``, or a list of them (one per
        ranking table, e.g. entities and relations), whose losses :meth:`loss` averages."""
        return self.model.collate(examples)

    def loss(self, model: MRMKG, batch) -> torch.Tensor:
        """The training loss of ``batch``: the model's own (Eq. 8); for a list of sub-batches, their
        losses weighted by size."""
        if not isinstance(batch, list):
            return model(batch).loss
        total = sum(len(b) for b in batch)
        return sum(model(b).loss * (len(b) / total) for b in batch)

    def evaluate(self, model: MRMKG, batch_size: int = 16) -> dict:
        """Metrics on the task's dev split (the engine calls it during and after training)."""
        raise NotImplementedError

    def evaluate_split(self, pipe, split, batch_size: int = 16, progress: bool = False) -> tuple[list, dict, dict]:
        """``mrmkg eval``: ``(predictions, metrics, what was evaluated)`` on ``split`` (None: the
        task's own evaluation split), predicted by ``pipe`` (:class:`mrmkg.pipeline.Pipeline`)."""
        raise InputError(f"a {self.name!r} checkpoint has no split evaluation in `mrmkg eval`; its metrics are "
                         "in the run folder's metrics.json")

    # ------------------------------------------------------------------ answering (Pipeline)
    def rank_batch(self, examples: Sequence[Any]):
        """Ranking tasks: ``(batch, allowed)`` for scoring ``examples``: ``allowed [B, C]`` bool
        masks each example's candidates, or None when every column of the batch is a candidate."""
        raise NotImplementedError

    def candidate(self, batch, column: int) -> tuple[str, str]:
        """Ranking tasks: ``(id, name)`` of candidate column ``column`` of ``batch``."""
        raise NotImplementedError

    def gold_column(self, batch, i: int) -> int | None:
        """Ranking tasks: the gold answer's column for example ``i`` of ``batch`` (None: unknown)."""
        return int(batch.answer_pos[i]) if batch.answer_pos is not None and int(batch.answer_pos[i]) >= 0 else None

    @property
    def max_new_tokens(self) -> int:
        """Generative tasks: how many tokens an answer may take (their config's ``max_new_tokens``)."""
        return self.config.max_new_tokens

    def read_output(self, text: str, example) -> dict:
        """Generative tasks: the answer read from generated ``text``: at least ``answer`` (a string)."""
        return {"answer": text.strip()}

    def query_examples(self, queries: Sequence[Any], timer) -> list:
        """Examples for user questions (:class:`mrmkg.pipeline.Query`); ``timer(stage)`` is a
        context manager that times ``"encode"`` (frozen encoders) and ``"retrieve"``."""
        raise InputError(f"a {self.name!r} checkpoint does not answer questions of one's own (its task has no "
                         "query form); evaluate it with `mrmkg eval` instead")


class GraphRankingTask(Task):
    """A task over one built graph (``self.ctx``: :class:`~mrmkg.tasks.knowledge.GraphContext`) that
    ranks the graph's entities or relations with the entity head: MARS and MarKG pretraining. The
    subgraph goes through the graph encoder when ``uses_graph``."""

    ctx: GraphContext
    uses_graph: bool = True

    def model_defaults(self) -> dict:
        return {"use_kg": self.uses_graph, "use_image": True}

    def model_fixed(self) -> dict:
        return {"kg": self.ctx.graph, "entity_head": True}

    def features(self) -> KGFeatures:
        return KGFeatures.from_index(self.ctx.index)

    def image_token_dim(self) -> int | None:
        return self.ctx.image_vec.shape[1] or None

    def vocabulary(self):
        return self.ctx.kg.entity_names, self.ctx.kg.relation_names
