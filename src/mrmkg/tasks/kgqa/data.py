"""Stage-1 (pretraining) question-answer instances from any MMKG, and the record format shared with
the Visual Genome builder (:mod:`mrmkg.tasks.kgqa.vg`).

Paper §A.3 pretrains the adapters on VQA instances whose own scene graph is the MMKG, "to gain
proficiency in understanding MMKGs". Visual Genome cannot be had everywhere, so this module makes
the same kind of instance from whatever graph a user built with ``mrmkg kg``:

* relation questions: ``"What is the <relation> of <head>?"`` -> the tail name(s); one instance
  per (head, relation) pair, answers joined by ", " in triple order; pairs with more than
  ``max_answers`` tails are skipped (too open to be a question) and counted;
* image questions: ``"What is shown in this image?"`` with an entity image as the visual input ->
  the entity's name.

Subgraph (``subgraph`` option): ``"neighbourhood"`` (default) = the answer triples plus other
triples incident to the question entity, up to ``max_triples``, with the entity's image nodes —
the answer is *in* the graph on purpose, as in the VG instances whose scene graph holds the key
knowledge; the model learns to read it. ``"retrieve"`` = the A.6 retriever queried with the question
(or the image), as the paper does at fine-tuning time. ``"none"`` = no graph. Edge scores of
neighbourhood subgraphs are 0 (unranked), so they cannot leak which triple holds the answer.

A :class:`Stage1Record` is what both builders produce; :func:`to_examples` turns records into
``mrmkg.model.MRMKGExample`` objects, :func:`save_records` / :func:`load_records` keep them on disk
(JSON Lines, subgraph arrays inline).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_write_text, read_jsonl
from mrmkg.kg.graph import MMKG
from mrmkg.kg.subgraph import ENTITY, Subgraph
from mrmkg.yamlconfig import check_bounds

PROMPT_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass
class Stage1Record:
    """One stage-1 instance, ready to become an ``MRMKGExample``.

    ``subgraph`` indexes into the graph the records were built from (its ``node_ref`` are entity /
    image indices of that MMKG); ``image`` is the visual input (a VG photo or an entity image).
    """

    id: str
    question: str
    prompt: str
    target: str
    subgraph: Subgraph | None = None
    image: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class KGQAConfig:
    """How question-answer instances are made from an MMKG."""

    relation_questions: bool = field(default=True, metadata={"help": "make 'What is the <relation> of <entity>?' instances"})
    image_questions: bool = field(default=True, metadata={"help": "make 'What is shown in this image?' instances from entity images"})
    question_template: str = field(default="What is the {relation} of {entity}?",
                                   metadata={"help": "relation question; {relation} and {entity} are names"})
    image_question: str = field(default="What is shown in this image?", metadata={"help": "image question text"})
    prompt_template: str = field(default=PROMPT_TEMPLATE, metadata={"help": "model input; {question} is replaced"})
    max_answers: int = field(default=3, metadata={"ge": 1, "help": "skip (head, relation) pairs with more tails than this"})
    images_per_entity_questions: int = field(default=1, metadata={"ge": 0, "help": "image questions per entity (its first images)"})
    subgraph: str = field(default="neighbourhood", metadata={"help": "neighbourhood | retrieve | none (see module doc)"})
    max_triples: int = field(default=10, metadata={"ge": 1, "help": "triples in a neighbourhood subgraph (answer triples first)"})
    images_per_entity: int = field(default=1, metadata={"ge": 0, "help": "image nodes per subgraph entity ('image of')"})
    max_instances: int | None = field(default=None, metadata={"ge": 1, "help": "sample this many instances (seeded); None = all"})
    seed: int = field(default=0, metadata={"ge": 0, "lt": 2**32, "help": "seed of the instance sample and of neighbour order"})

    def __post_init__(self) -> None:
        if self.subgraph not in ("neighbourhood", "retrieve", "none"):
            raise InputError(f"field 'subgraph': expected neighbourhood, retrieve or none, not {self.subgraph!r}")
        check_bounds(self)
        if "{relation}" not in self.question_template or "{entity}" not in self.question_template:
            raise InputError("field 'question_template': must contain {relation} and {entity}")
        if "{question}" not in self.prompt_template:
            raise InputError("field 'prompt_template': must contain {question}")


def neighbourhood_subgraph(kg: MMKG, entity: int, first: Sequence[int] = (), max_triples: int = 10,
                           images_per_entity: int = 1, rng: random.Random | None = None, query: str = "") -> Subgraph:
    """Triples ``first`` and then other triples incident to ``entity`` (shuffled by ``rng``, else in id
    order), ``max_triples`` in all, with ``entity`` as seed; scores are 0 (unranked)."""
    first = [int(t) for t in first][:max_triples]
    taken = set(first)
    rest = [t for t in kg.incident_triples(np.array([entity])).tolist() if t not in taken]
    if rng is not None:
        rng.shuffle(rest)
    tids = first + rest[: max_triples - len(first)]
    return Subgraph.from_triples(kg, np.array(tids, np.int64), np.zeros(len(tids), np.float32),
                                 seeds=[entity], query=query, images_per_entity=images_per_entity)


def build_kg_qa(kg: MMKG, config: KGQAConfig = KGQAConfig(), retriever=None) -> tuple[list[Stage1Record], dict]:
    """Question-answer instances from ``kg``; returns (records, counts).

    ``retriever`` (a :class:`mrmkg.kg.retrieve.Retriever` over ``kg``) is needed for
    ``subgraph="retrieve"``. Same config and graph -> the same records, in the same order.
    """
    if config.subgraph == "retrieve" and retriever is None:
        raise InputError("subgraph 'retrieve' needs a Retriever over the graph (or use 'neighbourhood')")
    rng = random.Random(config.seed)
    counts = {"relation_questions": 0, "image_questions": 0, "skipped_too_many_answers": 0}
    cands: list[tuple[str, str, str, int, list[int], str | None]] = []  # id, question, target, entity, answer triples, image
    if config.relation_questions and kg.num_triples:
        groups: dict[tuple[int, int], list[int]] = {}
        for t, (h, r, _) in enumerate(kg.triples.tolist()):
            groups.setdefault((h, r), []).append(t)
        for (h, r), tids in groups.items():
            tails = list(dict.fromkeys(kg.entity_names[kg.triples[t, 2]] for t in tids))
            if len(tails) > config.max_answers:
                counts["skipped_too_many_answers"] += 1
                continue
            q = config.question_template.format(relation=kg.relation_names[r], entity=kg.entity_names[h])
            cands.append((f"rel:{kg.entity_ids[h]}:{kg.relation_ids[r]}", q, ", ".join(tails), h, tids, None))
    if config.image_questions and kg.num_images:
        for e in range(kg.num_entities):
            for im in kg.images_of(e)[: config.images_per_entity_questions].tolist():
                cands.append((f"img:{kg.entity_ids[e]}:{im}", config.image_question, kg.entity_names[e], e, [],
                              kg.image_paths[im]))
    if config.max_instances is not None and len(cands) > config.max_instances:
        keep = sorted(rng.sample(range(len(cands)), config.max_instances))
        cands = [cands[i] for i in keep]
    if config.subgraph == "retrieve":
        sgs = retriever.retrieve_batch([None if img else q for _, q, _, _, _, img in cands],
                                       [img for *_, img in cands])
    else:
        sgs = [None if config.subgraph == "none" else
               neighbourhood_subgraph(kg, e, tids, config.max_triples, config.images_per_entity, rng, query=q)
               for _, q, _, e, tids, _ in cands]
    records = []
    for (rid, q, target, e, tids, img), sg in zip(cands, sgs):
        counts["image_questions" if img else "relation_questions"] += 1
        records.append(Stage1Record(id=rid, question=q, prompt=config.prompt_template.format(question=q),
                                    target=target, subgraph=sg, image=img,
                                    meta={"entity": kg.entity_ids[e], "answer_triples": list(map(int, tids))}))
    return records, counts


# ------------------------------------------------------------------------------ conversion
def subgraph_to_mmkg(kg: MMKG, sg: Subgraph) -> MMKG:
    """A stand-alone MMKG holding exactly ``sg``'s entities, triples and images (ids kept)."""
    ents = [int(r) for k, r in zip(sg.node_kind.tolist(), sg.node_ref.tolist()) if k == ENTITY]
    tids = sg.triple_ids.tolist()
    rels = sorted({int(kg.triples[t, 1]) for t in tids})
    images = [(kg.entity_ids[int(kg.image_entity[r])], kg.image_paths[r])
              for k, r in zip(sg.node_kind.tolist(), sg.node_ref.tolist()) if k != ENTITY]
    return MMKG.from_records(
        entities=[(kg.entity_ids[e], kg.entity_names[e], kg.entity_descriptions[e]) for e in ents],
        relations=[(kg.relation_ids[r], kg.relation_names[r]) for r in rels],
        triples=[(kg.entity_ids[h], kg.relation_ids[r], kg.entity_ids[t]) for h, r, t in kg.triples[tids].tolist()],
        images=images,
    )


def to_examples(records: Sequence[Stage1Record], vision_encoder=None, with_target: bool = True) -> list:
    """Records -> ``mrmkg.model.MRMKGExample`` (prompt, target, subgraph, image tokens of ``image``)."""
    from mrmkg.model import MRMKGExample  # engineer MODEL's contract

    tokens: list = [None] * len(records)
    if vision_encoder is not None:
        idx = [i for i, r in enumerate(records) if r.image]
        if idx:
            arr = vision_encoder.encode_tokens([records[i].image for i in idx])
            for j, i in enumerate(idx):
                tokens[i] = np.asarray(arr[j], dtype=np.float32)
    return [MRMKGExample(prompt=r.prompt, target=r.target if with_target else None, answer=None,
                         subgraph=r.subgraph, image_tokens=t) for r, t in zip(records, tokens)]


_SG_FIELDS = ("node_kind", "node_ref", "edge_index", "edge_type", "edge_triple", "edge_score", "seeds")


def _sg_to_json(sg: Subgraph | None):
    if sg is None:
        return None
    d = {k: getattr(sg, k).tolist() for k in _SG_FIELDS}
    d["query"] = sg.query
    return d


def _sg_from_json(d, path: Path, line: int) -> Subgraph | None:
    if d is None:
        return None
    try:
        return Subgraph(
            node_kind=np.asarray(d["node_kind"], np.int8), node_ref=np.asarray(d["node_ref"], np.int64),
            edge_index=np.asarray(d["edge_index"], np.int64).reshape(2, -1),
            edge_type=np.asarray(d["edge_type"], np.int64), edge_triple=np.asarray(d["edge_triple"], np.int64),
            edge_score=np.asarray(d["edge_score"], np.float32), seeds=np.asarray(d["seeds"], np.int64),
            query=d.get("query", ""))
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"field 'subgraph': expected arrays {', '.join(_SG_FIELDS)} ({e})", path=path, line=line) from None


def save_records(records: Sequence[Stage1Record], path: str | Path) -> None:
    """Write records as JSON Lines, atomically."""
    lines = [json.dumps({"id": r.id, "question": r.question, "prompt": r.prompt, "target": r.target,
                         "image": r.image, "meta": r.meta, "subgraph": _sg_to_json(r.subgraph)},
                        ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def load_records(path: str | Path) -> list[Stage1Record]:
    """Read records written by :func:`save_records`; bad lines raise InputError naming file:line."""
    path = Path(path)
    out = []
    for i, d in read_jsonl(path, "records file", "one stage-1 record (JSON object) per line"):
        for k in ("id", "prompt", "target"):
            if not isinstance(d.get(k), str):
                raise InputError(f"field '{k}': expected a string", path=path, line=i)
        out.append(Stage1Record(id=d["id"], question=d.get("question", ""), prompt=d["prompt"], target=d["target"],
                                subgraph=_sg_from_json(d.get("subgraph"), path, i), image=d.get("image"),
                                meta=d.get("meta") or {}))
    return out


@dataclass
class Stage1TaskArgs:
    """``task_args`` of a stage-1 run (configs/*-stage1.yaml); validated with ``yamlconfig.from_dict``."""

    source: str = field(default="vg", metadata={"help": "vg: a folder written by `mrmkg stage1 vg` (graph/ + records.jsonl); "
                                                        "records: a records.jsonl from `mrmkg stage1 kg-qa` over `kg`"})
    data: str = field(default="runs/stage1-vg", metadata={"help": "the vg output folder, or the records file"})
    kg: str = field(default="", metadata={"help": "graph folder (with index) the records' subgraphs refer to; "
                                                  "vg: '' = <data>/graph (index it with `mrmkg kg build`)"})
    eval_fraction: float = field(default=0.02, metadata={"help": "held-out share of instances for the dev metrics "
                                                                 "(exact match, loss; seeded)"})
    limit: int | None = field(default=None, metadata={"help": "use only the first instances (smoke runs)"})
    max_new_tokens: int = field(default=32, metadata={"help": "generation length of dev answers"})
    with_image: bool = field(default=True, metadata={"help": "give instances their image's visual tokens (the encoder "
                                                             "named by model.vision_encoder)"})

    def __post_init__(self) -> None:
        if self.source not in ("vg", "records"):
            raise ValueError(f"source must be 'vg' or 'records', not {self.source!r}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError("eval_fraction must be in [0, 1)")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
