"""``MRMKGConfig``: every choice of the MR-MKG model, with help text, and a JSON round trip.

The paper (notes §1) leaves many details open; each open choice is a field here, and its help
text says what the default is and why. Defaults are the CPU-friendly reading of the paper:
a 2-layer RGAT of width 256, literal ("text"-length) adapters, text as the knowledge query.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from mrmkg.errors import InputError

CHOICES = {
    "graph_encoder": ("rgat", "gat", "gcn", "none"),
    "entity_init": ("mean", "first"),
    "adapter_length": ("text", "nodes"),
    "knowledge_query": ("text", "image"),
    "align_on": ("graph", "adapter"),
    "align_negatives": ("mean", "hardest"),
    "dtype": ("bf16", "fp32"),
    "rank_over": ("entity", "relation"),
    "pointer_mode": ("add", "first"),
}


@dataclass
class MRMKGConfig:
    # --- frozen models (names only; stored so that from_pretrained can find them again)
    llm: str = field(default="smollm2-135m", metadata={"help": "frozen LLM: registry name, HF id or folder (mrmkg.encoders.registry.load_llm)"})
    text_encoder: str = field(default="minilm", metadata={"help": "frozen text encoder that embedded the KG entities/relations (informational; features come from the index)"})
    vision_encoder: str = field(default="efficientnet-lite0", metadata={"help": "frozen vision encoder of image nodes and image tokens (informational)"})
    kg: str = field(default="", metadata={"help": "graph folder whose index gives the KG features; from_pretrained reloads it when features are not passed"})

    # --- graph encoder (Eq. 3)
    graph_encoder: str = field(default="rgat", metadata={"help": "rgat (PyG RGATConv, relation-aware attention, relation embeddings as edge features) | gat (GATConv with edge features) | gcn (GCNConv, relation-blind) | none (node init only): paper Table 7"})
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
    graph_pointer: bool = field(default=False, metadata={
        "help": "not in the paper: also score each candidate that is an entity node of the subgraph from that node "
                "(bilinear in the answer slot and the graph encoder output, plus focus / memory / focus-neighbour flags; "
                "mrmkg.model.pointer), zero-initialised so training starts from the plain entity head"})
    pointer_mode: str = field(default="add", metadata={
        "help": "add: a node candidate's score is entity head + pointer, one cross-entropy; first: subgraph nodes rank "
                "above every other candidate, ordered by the pointer alone, the rest by the entity head, trained by "
                "two cross-entropies (the head's over all candidates, the pointer's over the nodes), so the head's "
                "memory of training pairs cannot outvote the graph (mrmkg.model.pointer)"})
    pointer_features: str = field(default="focus,memory,near", metadata={
        "help": "comma-separated node features the graph pointer weighs (mrmkg.model.pointer.ALL_FEATURES): focus, "
                "memory, near (the default three), copy (the example tail when the question is the example head), node "
                "(a learned bonus of every subgraph node over the other candidates), relation (a learned weight per "
                "relation type of the node's edges to the focus), relation_odds (the same sum over a fixed table of "
                "per-relation log-odds that the task computes from its training file, one learned weight; MARS only), "
                "frequency (log(1 + how often the entity occurs in the task's training file), one learned weight; "
                "MARS only), retrieval (the best retrieval score of the triples that brought the node in; measured "
                "worse on MARS dev)"})
    pointer_scale: float = field(default=1.0, metadata={
        "help": "fixed multiplier of the pointer's feature and per-entity prior terms: a learning-rate multiplier "
                "for those few weights, which Adam otherwise moves by only ~lr per step (mrmkg.model.pointer)"})
    relation_at_eval: str = field(default="learned", metadata={
        "help": "which per-relation values the graph pointer's 'relation' term uses in evaluation (model.eval()): "
                "learned (the weights training fitted) or odds (the task's relation log-odds table, weight 1, in their "
                "place; training is unchanged). On MARS the learned weights differ from seed to seed and fit training "
                "pairs the model has memorised; odds measured +0.012 to +0.018 Hits@1 in 7 of 7 seeds "
                "(docs/results.md, session 8)"})
    relation_odds_init: float = field(default=0.0, metadata={
        "help": "starting weight of the pointer's relation_odds feature (its effective weight: the term starts as "
                "init x the log-odds table); 0 starts it off like every other pointer weight, 1 adds the training "
                "log-odds from the first step, a data prior the model can still re-weigh (mrmkg.model.pointer)"})
    pointer_prior: bool = field(default=True, metadata={
        "help": "give the graph pointer a learned prior per entity (p_c in mrmkg.model.pointer); false: nodes are "
                "scored from their features, relations and graph encoding only (MARS dev, one epoch, 3 paired seeds: "
                "+0.002 to +0.019 Hits@1 without it; docs/results.md session 6)"})
    pointer_loss_weight: float = field(default=0.0, metadata={
        "help": "weight of the graph pointer's own loss: cross-entropy of its scores alone over the candidates that are "
                "subgraph nodes (mrmkg.model.pointer); 0 (default) = train it only through the summed scores "
                "(MARS dev, 1 epoch: 1.0 gave Hits@1 0.276 / MRR 0.329, 0 gave 0.289 / 0.344; docs/results.md)"})
    num_entity_tokens: int = field(default=0, metadata={"help": "entity tokens; 0 = one per entity of the KG features"})
    num_relation_tokens: int = field(default=0, metadata={"help": "relation tokens; 0 = one per relation of the KG features"})

    # --- text and speed
    max_prompt_tokens: int = field(default=512, metadata={"help": "prompt text tokens kept (the END is kept: the answer slot is the last prompt token)"})
    max_target_tokens: int = field(default=128, metadata={"help": "target tokens kept (the start is kept; EOS appended)"})
    dtype: str = field(default="bf16", metadata={"help": "bf16: autocast the forward to bfloat16 (fast on AMX CPUs); fp32: no autocast"})
    pack_sequences: bool = field(default=False, metadata={
        "help": "not in the paper, speed only: run a causal LLM on the batch's real tokens laid end to end in one "
                "row, attention kept inside each example, instead of a padded [B, L] batch (mrmkg.model.packing); "
                "equal up to float rounding, no compute on padding (~17% of MARS tokens; 8.4 -> 9.4 samples/s measured). "
                "Llama, Gemma 3, Qwen2, Mistral, ...; seq2seq models ignore it"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute LLM activations in backward (less memory, ~30% more time)"})
    seed: int = field(default=0, metadata={"help": "seed of parameter init and of alignment anchor sampling"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, path: str | Path | None = None) -> None:
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
        from mrmkg.model.pointer import ALL_FEATURES

        bad = [f for f in self.pointer_feature_names if f not in ALL_FEATURES]
        if bad:
            raise InputError(f"model.pointer_features is {self.pointer_features!r}; expected a comma-separated list of "
                             f"{list(ALL_FEATURES)}", path=path)
        if self.pointer_scale <= 0:
            raise InputError(f"model.pointer_scale is {self.pointer_scale}; expected > 0", path=path)
        if self.relation_at_eval not in ("learned", "odds"):
            raise InputError(f"model.relation_at_eval is {self.relation_at_eval!r}; expected learned or odds", path=path)
        if self.relation_at_eval == "odds" and "relation" not in self.pointer_feature_names:
            raise InputError("model.relation_at_eval=odds replaces the pointer's 'relation' term in evaluation; "
                             f"model.pointer_features ({self.pointer_features!r}) has none", path=path)
        if self.pointer_loss_weight < 0:
            raise InputError(f"model.pointer_loss_weight is {self.pointer_loss_weight}; expected >= 0", path=path)
        if self.align_weight < 0 or self.align_margin < 0 or self.align_anchors < 0:
            raise InputError("model.align_weight, align_margin and align_anchors must be >= 0", path=path)

    @property
    def pointer_feature_names(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.pointer_features.split(",") if f.strip())

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, path: str | Path | None = None) -> "MRMKGConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown model config field(s) {unknown}; known: {sorted(known)}", path=path)
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for k, v in d.items():
            want = {"int": int, "float": (int, float), "bool": bool, "str": str}[types[k]]
            if not isinstance(v, want) or (types[k] == "int" and isinstance(v, bool)):
                raise InputError(f"model.{k} is {v!r}; expected {types[k]}", path=path)
        cfg = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            setattr(cfg, f.name, d.get(f.name, f.default))
        cfg.validate(path)
        return cfg

    def save(self, path: str | Path) -> None:
        from mrmkg.fileio import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "MRMKGConfig":
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise InputError(f"not valid JSON: {e.msg}", path=path, line=e.lineno) from None
        if not isinstance(d, dict):
            raise InputError("expected a JSON object of model config fields", path=path)
        return cls.from_dict(d, path=path)

    @staticmethod
    def help() -> dict[str, str]:
        """Field name -> help text (for CLIs and docs)."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(MRMKGConfig)}
