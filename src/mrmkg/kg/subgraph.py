"""A retrieved subgraph with provenance (which triples, which scores, which seeds).

Shapes, with ``n`` nodes and ``e`` edges:

* ``node_kind``  int8  [n]    0 = entity node, 1 = image node (an image of an entity)
* ``node_ref``   int64 [n]    entity index (kind 0) or image index (kind 1) into the MMKG
* ``edge_index`` int64 [2, e] local node ids, source = head, target = tail
* ``edge_type``  int64 [e]    relation index; image edges use ``kg.image_of``
* ``edge_triple`` int64 [e]   triple id in the MMKG, -1 for image-of edges, -2 (``MEMORY``) for
  memory edges: facts a task adds that are not MMKG triples (MARS: training analogy pairs)
* ``edge_score`` float32 [e]  cosine similarity of the triple to the query (0 for image edges; for
  memory edges, how often the fact was seen)

Message passing runs over ``edge_index`` as given (head -> tail); graph encoders that want both
directions add reverse edges themselves.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

ENTITY, IMAGE = 0, 1
IMAGE_EDGE, MEMORY = -1, -2  # edge_triple of edges that are not MMKG triples


@dataclass
class Subgraph:
    node_kind: np.ndarray
    node_ref: np.ndarray
    edge_index: np.ndarray
    edge_type: np.ndarray
    edge_triple: np.ndarray
    edge_score: np.ndarray
    seeds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    query: str = ""
    #: entities the question is about (MARS: the question entity); empty = the seeds
    focus: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: the example pair ``[head, tail]`` an analogy question is compared with (MARS); empty = none
    example: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def empty(cls, query: str = "") -> "Subgraph":
        z = np.zeros(0, dtype=np.int64)
        return cls(np.zeros(0, np.int8), z, np.zeros((2, 0), np.int64), z, z, np.zeros(0, np.float32), z, query)

    @classmethod
    def from_triples(cls, kg, triple_ids, scores, seeds=(), query: str = "",
                     images_per_entity: int = 0) -> "Subgraph":
        """Nodes = the entities of ``triple_ids`` plus ``seeds``, and up to ``images_per_entity``
        image nodes per entity, each linked to it by ``image of``."""
        triple_ids = np.asarray(triple_ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        tri = kg.triples[triple_ids] if triple_ids.size else np.zeros((0, 3), np.int64)
        seeds = np.asarray(seeds, dtype=np.int64)
        ents = np.concatenate([tri[:, 0], tri[:, 2], seeds])
        ents = ents[np.sort(np.unique(ents, return_index=True)[1])]  # first-seen order
        local = {int(e): i for i, e in enumerate(ents.tolist())}
        kinds = [np.zeros(len(ents), np.int8)]
        refs = [ents]
        src = [np.array([local[h] for h in tri[:, 0].tolist()], dtype=np.int64)]
        dst = [np.array([local[t] for t in tri[:, 2].tolist()], dtype=np.int64)]
        etype, etrip, escore = [tri[:, 1]], [triple_ids], [scores]
        if images_per_entity > 0 and kg.num_images:
            img_nodes, img_src, img_dst = [], [], []
            nxt = len(ents)
            for e in ents.tolist():
                for im in kg.images_of(e)[:images_per_entity].tolist():
                    img_nodes.append(im)
                    img_src.append(nxt)
                    img_dst.append(local[e])
                    nxt += 1
            if img_nodes:
                k = len(img_nodes)
                kinds.append(np.ones(k, np.int8))
                refs.append(np.array(img_nodes, np.int64))
                src.append(np.array(img_src, np.int64))
                dst.append(np.array(img_dst, np.int64))
                etype.append(np.full(k, kg.image_of, np.int64))
                etrip.append(np.full(k, IMAGE_EDGE, np.int64))
                escore.append(np.zeros(k, np.float32))
        return cls(
            node_kind=np.concatenate(kinds),
            node_ref=np.concatenate(refs).astype(np.int64),
            edge_index=np.stack([np.concatenate(src), np.concatenate(dst)]).astype(np.int64),
            edge_type=np.concatenate(etype).astype(np.int64),
            edge_triple=np.concatenate(etrip).astype(np.int64),
            edge_score=np.concatenate(escore).astype(np.float32),
            seeds=seeds,
            query=query,
        )

    def _with(self, nodes=(), edges=()) -> "Subgraph":
        """A copy with entity ``nodes`` and memory ``edges`` ``(head, relation, tail, count)``
        appended; entities not yet in the subgraph become new entity nodes."""
        refs = self.node_ref.tolist()
        local = {int(r): i for i, (r, k) in enumerate(zip(refs, self.node_kind.tolist())) if k == ENTITY}
        kinds, new_refs = list(self.node_kind.tolist()), list(refs)

        def node(e: int) -> int:
            if e not in local:
                local[e] = len(new_refs)
                new_refs.append(e)
                kinds.append(ENTITY)
            return local[e]

        for e in nodes:
            node(int(e))
        src = [node(int(h)) for h, _, _, _ in edges]
        dst = [node(int(t)) for _, _, t, _ in edges]
        return Subgraph(
            node_kind=np.asarray(kinds, np.int8), node_ref=np.asarray(new_refs, np.int64),
            edge_index=np.concatenate([self.edge_index, np.array([src, dst], np.int64).reshape(2, -1)], axis=1),
            edge_type=np.concatenate([self.edge_type, np.array([r for _, r, _, _ in edges], np.int64)]),
            edge_triple=np.concatenate([self.edge_triple, np.full(len(edges), MEMORY, np.int64)]),
            edge_score=np.concatenate([self.edge_score, np.array([c for _, _, _, c in edges], np.float32)]),
            seeds=self.seeds, query=self.query, focus=self.focus, example=self.example)

    def with_memory(self, edges) -> "Subgraph":
        """A copy with memory edges ``(head, relation, tail, count)`` (entity / relation indices)
        appended; entities not yet in the subgraph become new entity nodes."""
        edges = list(edges)
        return self._with(edges=edges) if edges else self

    def with_example(self, head: int, tail: int, add_copy_node: bool = False) -> "Subgraph":
        """A copy that knows the analogy's example pair. When ``head`` is a focus entity the
        question repeats the example (``h : t :: h : ?``) and ``tail`` is its answer
        (:attr:`copy_mask`); ``add_copy_node`` then makes ``tail`` a node if retrieval missed it."""
        out = self._with(nodes=[tail]) if add_copy_node and int(head) in self.focus.tolist() else self
        return replace(out, example=np.array([head, tail], dtype=np.int64))

    @property
    def memory_edges(self) -> list[tuple[int, int, int, float]]:
        """``(head entity, relation, tail entity, count)`` of every memory edge."""
        sel = np.flatnonzero(self.edge_triple == MEMORY)
        return [(int(self.node_ref[self.edge_index[0, i]]), int(self.edge_type[i]),
                 int(self.node_ref[self.edge_index[1, i]]), float(self.edge_score[i])) for i in sel.tolist()]

    @property
    def num_nodes(self) -> int:
        return int(self.node_kind.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_type.shape[0])

    @property
    def triple_ids(self) -> np.ndarray:
        return self.edge_triple[self.edge_triple >= 0]

    @property
    def triple_scores(self) -> np.ndarray:
        return self.edge_score[self.edge_triple >= 0]

    @property
    def copy_mask(self) -> np.ndarray:
        """``bool [n]``: the example tail's node when the example head is a focus entity."""
        if self.example.size != 2 or int(self.example[0]) not in self.focus.tolist():
            return np.zeros(self.num_nodes, dtype=bool)
        return (self.node_kind == ENTITY) & (self.node_ref == self.example[1])

    def to_pyg(self):
        """A ``torch_geometric.data.Data`` with ``node_kind``, ``node_ref``, ``node_focus`` (1 for
        the focus entities, or the seeds when no focus is set), ``node_copy`` (1 for the example
        tail when the example head is a focus entity), ``edge_index``, ``edge_type``,
        ``edge_score`` and ``edge_memory`` (1 for memory edges); ``num_nodes`` is set so empty
        graphs batch correctly."""
        import torch
        from torch_geometric.data import Data

        return Data(
            node_kind=torch.from_numpy(self.node_kind.astype(np.int64)),
            node_ref=torch.from_numpy(self.node_ref),
            node_focus=torch.from_numpy((np.isin(self.node_ref, self.focus if self.focus.size else self.seeds)
                                         & (self.node_kind == ENTITY)).astype(np.int64)),
            node_copy=torch.from_numpy(self.copy_mask.astype(np.int64)),
            edge_index=torch.from_numpy(self.edge_index),
            edge_type=torch.from_numpy(self.edge_type),
            edge_score=torch.from_numpy(self.edge_score),
            edge_memory=torch.from_numpy((self.edge_triple == MEMORY).astype(np.int64)),
            num_nodes=self.num_nodes,
        )

    def triples_table(self, kg) -> list[dict]:
        """One dict per retrieved triple, best first: id, head/relation/tail ids and names, score."""
        rows = []
        for t, s in zip(self.triple_ids.tolist(), self.triple_scores.tolist()):
            h, r, ta = kg.triples[t].tolist()
            rows.append({
                "id": t,
                "head": kg.entity_ids[h], "head_name": kg.entity_names[h],
                "relation": kg.relation_ids[r], "relation_name": kg.relation_names[r],
                "tail": kg.entity_ids[ta], "tail_name": kg.entity_names[ta],
                "score": round(float(s), 6),
            })
        rows.sort(key=lambda d: -d["score"])
        return rows

    def to_dict(self, kg) -> dict:
        """JSON-ready provenance: the query, seed entities, nodes and triples with scores."""
        nodes = []
        for k, r in zip(self.node_kind.tolist(), self.node_ref.tolist()):
            if k == ENTITY:
                nodes.append({"kind": "entity", "id": kg.entity_ids[r], "name": kg.entity_names[r]})
            else:
                e = int(kg.image_entity[r])
                nodes.append({"kind": "image", "image": kg.image_paths[r], "of": kg.entity_ids[e]})
        return {
            "query": self.query,
            "seeds": [kg.entity_ids[s] for s in self.seeds.tolist()],
            "nodes": nodes,
            "triples": self.triples_table(kg),
            "example": [kg.entity_ids[e] for e in self.example.tolist()],
            "memory": [{"head": kg.entity_ids[h], "relation": kg.relation_ids[r], "tail": kg.entity_ids[t], "count": c}
                       for h, r, t, c in self.memory_edges],
        }
