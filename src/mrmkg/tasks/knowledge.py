"""Knowledge for prompts, shared by the graph tasks: a graph with its index and retriever, retrieved
triples written as text ("Facts: ..."), and a subgraph cut down to its best triples."""
from __future__ import annotations

import numpy as np

from mrmkg.errors import InputError
from mrmkg.kg.retrieve import RetrievalConfig, Retriever, open_graph
from mrmkg.kg.subgraph import Subgraph


def facts_prefix(kg, triple_ids: np.ndarray, entity_tokens: bool) -> str:
    """Triples ``triple_ids`` (shape (k,)) as the prompt prefix "Facts: a; b.\\n" ("" for none): each
    "head relation tail" (``kg.verbalise``), or with ``entity_tokens`` "name [E i] relation name [E j]",
    the entities' trainable tokens, so a fact names the candidates the model ranks."""
    if entity_tokens:
        names, rels = kg.entity_names, kg.relation_names
        facts = [f"{names[h]} [E{h}] {rels[r]} {names[t]} [E{t}]" for h, r, t in kg.triples[triple_ids].tolist()]
    else:
        facts = [kg.verbalise(int(i)) for i in triple_ids]
    return "Facts: " + "; ".join(facts) + ".\n" if facts else ""


def top_triples(kg, sg, N: int, images_per_entity: int):
    """The subgraph rebuilt from its ``N`` best triples (same seeds)."""
    ids, scores = sg.triple_ids, sg.triple_scores
    order = np.lexsort((ids, -scores))[:N]
    return Subgraph.from_triples(kg, ids[order], scores[order], seeds=sg.seeds, query=sg.query,
                                 images_per_entity=images_per_entity)


class GraphContext:
    """The graph, its index and a retriever; entity vectors and first images for queries."""

    def __init__(self, graph: str, n: int, N: int, images_per_entity: int):
        if not graph:
            raise InputError("field 'task_args.graph': the built MarKG graph folder is required "
                             "(make it with `mrmkg kg build <markg folder> -o DIR`)")
        self.graph = graph
        self.kg, self.index = open_graph(graph)
        self.retriever = Retriever(self.kg, self.index, RetrievalConfig(n=n, N=N, images_per_entity=images_per_entity))
        self.entity_vec = np.asarray(self.index.entity_emb, dtype=np.float32)
        self.image_vec = np.asarray(self.index.image_emb, dtype=np.float32)

    def first_image(self, e: int) -> int | None:
        imgs = self.kg.images_of(e)
        return int(imgs[0]) if imgs.size and self.image_vec.shape[0] else None


def unit_vector(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def resolve_entity(kg, text: str) -> int:
    """Graph index of an entity given by id or by name (case-insensitive, surrounding spaces ignored)."""
    s = text.strip()
    if not s:
        raise InputError("an empty entity: give an entity id or name")
    if kg.has_entity(s):
        return kg.entity_index(s)
    key = s.casefold()
    hits = [i for i, n in enumerate(kg.entity_names) if n.casefold() == key]
    if len(hits) == 1:
        return hits[0]
    if hits:
        listed = ", ".join(f"{kg.entity_ids[i]} ({kg.entity_names[i]})" for i in hits[:10])
        raise InputError(f"entity name {s!r} is ambiguous: {len(hits)} entities have it ({listed}); give the id instead")
    near = [i for i, n in enumerate(kg.entity_names) if key in n.casefold()][:10]
    hint = f"; names containing it: {', '.join(f'{kg.entity_ids[i]} ({kg.entity_names[i]})' for i in near)}" if near else ""
    raise InputError(f"no entity has the id or name {s!r}{hint}")
