"""``MRMKGConfig``: every choice of the MR-MKG model, with help text, and a JSON round trip.

The paper (notes §1) leaves many details open; each open choice is a field here, and its help
text says what the default is and why. Defaults are the CPU-friendly reading of the paper:
a 2-layer RGAT of width 256, literal ("text"-length) adapters, text as the knowledge query.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_write_json, read_json
from mrmkg.model.extensions.pointer_config import PointerConfig
from mrmkg.model.graph_encoders import graph_encoder_names
from mrmkg.yamlconfig import Source, from_dict

CHOICES = {
    "entity_init": ("mean", "first"),
    "adapter_length": ("text", "nodes"),
    "knowledge_query": ("text", "image"),
    "align_on": ("graph", "adapter"),
    "align_negatives": ("mean", "hardest"),
    "dtype": ("bf16", "fp32"),
    "llm_dtype": ("fp32", "bf16", "fp16"),
    "device_map": ("none", "auto"),
    "rank_over": ("entity", "relation"),
}

#: the flat pointer fields of mrmkg before the ``pointer`` section (session 17), and where they went
_FLAT_POINTER = {"graph_pointer": "pointer: {} (present = on)", "pointer_mode": "pointer.mode",
                 "pointer_features": "pointer.features (a list)", "pointer_scale": "pointer.scale",
                 "pointer_prior": "pointer.prior", "pointer_loss_weight": "pointer.loss_weight",
                 "relation_at_eval": "pointer.relation_at_eval", "relation_odds_init": "pointer.relation_odds_init"}


@dataclass
class MRMKGConfig:
    # --- frozen models (names only; stored so that from_pretrained can find them again)
    llm: str = field(default="smollm2-135m", metadata={"help": "frozen LLM: registry name, HF id or folder (mrmkg.encoders.registry.load_llm)"})
    text_encoder: str = field(default="minilm", metadata={"help": "frozen text encoder that embedded the KG entities/relations (informational; features come from the index)"})
    vision_encoder: str = field(default="efficientnet-lite0", metadata={"help": "frozen vision encoder of image nodes and image tokens (informational)"})
    kg: str = field(default="", metadata={"help": "graph folder whose index gives the KG features; from_pretrained reloads it when features are not passed"})
    llm_dtype: str = field(default="fp32", metadata={
        "help": "dtype the frozen LLM's weights load in: fp32, bf16 (half the memory; the paper's FLAN-T5-XL/XXL "
                "rows need it on one GPU) or fp16 (half too, but T5 overflows in fp16: use bf16 for T5/UL2). The "
                "trained parts (graph encoder, adapters, entity head) stay fp32 whatever this says; `--dtype` on "
                "train/eval/ask/serve/scienceqa eval overrides it"})
    device_map: str = field(default="none", metadata={
        "help": "none: the frozen LLM sits whole on the run's device; auto: accelerate's device_map='auto' spreads "
                "its layers over every visible GPU (then CPU) for a model larger than one card, one process only "
                "(not under DDP); the trained parts go with the input embeddings. `--device auto` sets it"})

    # --- graph encoder (Eq. 3)
    graph_encoder: str = field(default="rgat", metadata={"help": "a registered graph encoder (mrmkg.model.graph_encoders): rgat (PyG RGATConv, relation-aware attention, relation embeddings as edge features) | gat (GATConv with edge features) | gcn (GCNConv, relation-blind) | none (node init only): paper Table 7"})
    gnn_layers: int = field(default=2, metadata={"help": "message-passing layers (paper Fig. 4: about 2 is best)"})
    gnn_hidden: int = field(default=256, metadata={"help": "node width h inside the graph encoder (paper: not given)"})
    gnn_heads: int = field(default=4, metadata={"help": "attention heads of RGAT/GAT layers; heads are concatenated, so gnn_hidden must divide by it"})
    gnn_relation_dim: int = field(default=64, metadata={"help": "width h_e of the relation edge features Linear(d_t -> h_e)(relation_emb)"})
    gnn_num_blocks: int = field(default=8, metadata={"help": "RGAT block-diagonal decomposition of the per-relation weights (keeps MarKG's ~386 directed relation types cheap); 0 = off"})
    gnn_num_bases: int = field(default=0, metadata={"help": "RGAT basis decomposition (alternative to blocks; used only when gnn_num_blocks is 0); 0 = full per-relation weights"})
    reverse_edges: bool = field(default=True, metadata={"help": "add a reverse edge tail->head for every edge, with its own relation type r+R, so heads also receive messages (R-GCN convention)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on node features between graph layers"})

    # --- adapters (Eq. 1-2, 4-5)
    adapter_length: str = field(default="text", metadata={"help": "text: literal Eq. 2/5, output as long as the query (prompt ~3x text); nodes: one token per node / visual token, each refined by attending over the query"})
    knowledge_query: str = field(default="text", metadata={"help": "query Q of Eq. 5: text (H_T) or image (H_I, the visual adapter's linear output; items without an image fall back to H_T)"})
    knowledge_gate: bool = field(default=False, metadata={"help": "not in the paper: scale the knowledge adapter's output by tanh(g), g a learned scalar starting at 0, so the graph prefix fades in from nothing instead of disturbing the frozen LLM early in training (LLaMA-Adapter / Flamingo style)"})
    adapter_projections: bool = field(default=False, metadata={"help": "False: attention exactly as Eq. 2/5 (no Q/K/V maps); True: single-head nn.MultiheadAttention with Q/K/V/out projections as in MM-CoT"})
    use_kg: bool = field(default=True, metadata={"help": "feed the knowledge prefix H'_K (off for the 'no KG' ablation)"})
    use_image: bool = field(default=True, metadata={"help": "feed the visual prefix H'_I (off for the 'no image' ablation)"})

    # --- alignment (Eq. 6)
    align_weight: float = field(default=0.1, metadata={"help": "lambda in L = L_task + lambda * L_align (paper: not given); 0 switches alignment off"})
    align_margin: float = field(default=1.0, metadata={"help": "alpha, the triplet margin on Euclidean distances (paper: not given)"})
    align_anchors: int = field(default=4, metadata={"help": "M: image nodes sampled per subgraph as anchors (seeded)"})
    align_negatives: str = field(default="mean", metadata={"help": "mean: average hinge over all other entity nodes of the subgraph; hardest: only the closest one"})
    align_on: str = field(default="graph", metadata={"help": "graph: per-node graph-encoder outputs X_K; adapter: per-node knowledge-adapter linear outputs H_K"})

    # --- entity / relation ranking head (MARS)
    entity_head: bool = field(default=False, metadata={"help": "add one trainable token per KG entity and relation ([E12] / [R3] in prompts) and score candidates at the answer slot"})
    entity_init: str = field(default="mean", metadata={
        "help": "initialise each entity/relation token from its name's frozen input embeddings: their mean, or the "
                "first token's (with a tied LM head the answer slot then starts from the LLM's own score for "
                "beginning to write that name)"})
    num_entity_tokens: int = field(default=0, metadata={"help": "entity tokens; 0 = one per entity of the KG features"})
    num_relation_tokens: int = field(default=0, metadata={"help": "relation tokens; 0 = one per relation of the KG features"})
    pointer: PointerConfig | None = field(default=None, metadata={
        "help": "not in the paper: the graph pointer section (mrmkg.model.extensions.pointer; fields: "
                "mrmkg.model.extensions.pointer_config.PointerConfig): also score each candidate that is an entity "
                "node of the subgraph from that node (bilinear in the answer slot and the graph encoder output, plus "
                "named node features), zero-initialised so training starts from the plain entity head; needs "
                "entity_head and use_kg. Absent or null = no pointer; {} = the pointer with its defaults"})

    # --- text and speed
    max_prompt_tokens: int = field(default=512, metadata={"help": "prompt text tokens kept (the END is kept: the answer slot is the last prompt token)"})
    max_target_tokens: int = field(default=128, metadata={"help": "target tokens kept (the start is kept; EOS appended)"})
    dtype: str = field(default="bf16", metadata={"help": "bf16: autocast the forward to bfloat16 (fast on AMX CPUs; float16 when llm_dtype is fp16); fp32: no autocast. The compute dtype; llm_dtype is the storage dtype of the frozen weights"})
    pack_sequences: bool = field(default=False, metadata={
        "help": "not in the paper, speed only: run a causal LLM on the batch's real tokens laid end to end in one "
                "row, attention kept inside each example, instead of a padded [B, L] batch (mrmkg.model.packing); "
                "equal up to float rounding, no compute on padding (~17% of MARS tokens; 8.4 -> 9.4 samples/s measured). "
                "Llama, Gemma 3, Qwen2, Mistral, ...; seq2seq models ignore it"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute LLM activations in backward (less memory, ~30% more time)"})
    seed: int = field(default=0, metadata={"help": "seed of parameter init and of alignment anchor sampling"})

    def __post_init__(self) -> None:
        if isinstance(self.pointer, dict):   # MRMKGConfig(pointer={"mode": "first"}) as in YAML
            self.pointer = PointerConfig.from_dict(self.pointer)
        self.validate()

    def validate(self, path: str | Path | None = None) -> None:
        names = graph_encoder_names()
        if self.graph_encoder not in names:
            raise InputError(f"model.graph_encoder is {self.graph_encoder!r}; expected one of {list(names)}", path=path)
        for name, allowed in CHOICES.items():
            if hasattr(self, name) and getattr(self, name) not in allowed:
                raise InputError(f"model.{name} is {getattr(self, name)!r}; expected one of {list(allowed)}", path=path)
        for name in ("gnn_layers", "gnn_hidden", "gnn_heads", "gnn_relation_dim", "max_prompt_tokens", "max_target_tokens"):
            if getattr(self, name) < (0 if name == "gnn_layers" else 1):
                raise InputError(f"model.{name} is {getattr(self, name)}; expected a positive integer", path=path)
        if self.gnn_hidden % self.gnn_heads:
            raise InputError(f"model.gnn_hidden ({self.gnn_hidden}) must be a multiple of gnn_heads ({self.gnn_heads})", path=path)
        if self.gnn_num_blocks and self.gnn_hidden % self.gnn_num_blocks:
            raise InputError(f"model.gnn_hidden ({self.gnn_hidden}) must be a multiple of gnn_num_blocks ({self.gnn_num_blocks})", path=path)
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"model.dropout is {self.dropout}; expected 0 <= dropout < 1", path=path)
        if self.pointer is not None:
            self.pointer.validate(path)
        if self.align_weight < 0 or self.align_margin < 0 or self.align_anchors < 0:
            raise InputError("model.align_weight, align_margin and align_anchors must be >= 0", path=path)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["pointer"] = None if self.pointer is None else self.pointer.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict, path: str | Path | None = None) -> "MRMKGConfig":
        """From a config's ``model`` section or a checkpoint's ``mrmkg.json`` (``path``: its file, for errors):
        names, types, finite numbers and bounds (:func:`mrmkg.yamlconfig.from_dict`), then the choices."""
        if not isinstance(d, dict):
            raise InputError(f"the model section must be a mapping of fields, not {d!r}", path=path)
        old = sorted(k for k in d if k in _FLAT_POINTER)
        if old:
            raise InputError(f"model.{old[0]}: the graph pointer's options are one section now, model.pointer "
                             f"({', '.join(f'{k} -> {_FLAT_POINTER[k]}' for k in old)})", path=path)
        cfg = from_dict(cls, d, Source(path), prefix="model.")
        cfg.validate(path)
        return cfg

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "MRMKGConfig":
        d = read_json(path, "model config", "a JSON object of model config fields")
        if not isinstance(d, dict):
            raise InputError("expected a JSON object of model config fields", path=path)
        return cls.from_dict(d, path=path)

    @staticmethod
    def help() -> dict[str, str]:
        """Field name -> help text (for CLIs and docs); the pointer section's fields as ``pointer.<name>``."""
        return {**{f.name: f.metadata.get("help", "") for f in dataclasses.fields(MRMKGConfig)}, **{f"pointer.{k}": v for k, v in PointerConfig.help().items()}}
