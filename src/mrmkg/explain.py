"""Why a MARS prediction came out as it did: the examples of an ``mrmkg eval`` folder, in names.

``predictions.jsonl`` stores ids (entities, triples, relations) so that it stays small and exact. This
module joins it with the split file and the graph recorded in the folder's ``eval_config.yaml`` and gives,
per example: the analogy ``h : t :: q : ?`` with names, the gold answer and its rank, the top ten
candidates with their scores, the retrieved triples the model saw (id, head, relation, tail, retrieval
score), the analogy memory's edges and the copy node, and a picture of that subgraph. Over a whole folder,
:func:`coverage_summary` tells retrieval errors from ranking errors: how often that knowledge names the gold
answer at all, and the metrics with and without it.

The gold relation is shown for the reader only; it is never an input of the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mrmkg.errors import InputError
from mrmkg.fileio import read_jsonl
from mrmkg.metrics.ranking import ranking_metrics
from mrmkg.tasks.mars.data import load_mars_split
from mrmkg.tasks.mars.task import FACT_PROMPTS, GRAPH_PROMPTS, MarsTaskConfig
from mrmkg.yamlconfig import load_yaml

PREDICTION_FIELDS = ("id", "gold", "rank", "top10", "retrieved", "mode", "sides")


@dataclass
class EvalFolder:
    """An ``mrmkg eval`` output folder opened with its graph and split file."""

    path: Path
    kg: object  # MMKG
    records: dict  # prediction id -> MarsRecord
    predictions: list[dict]
    task_args: dict  # the evaluated run's task settings (prompt, text_triples, ...)


def open_eval(eval_dir: str | Path, graph: str | None = None, split_file: str | None = None) -> EvalFolder:
    """Open ``eval_dir``; ``graph`` / ``split_file`` replace the paths its ``eval_config.yaml`` records
    (e.g. when the evaluation ran in another folder or on another machine)."""
    from mrmkg.kg.graph import MMKG

    d = Path(eval_dir)
    cfg_path = d / "eval_config.yaml"
    if not cfg_path.is_file():
        raise InputError("not an `mrmkg eval` output folder: no eval_config.yaml", path=d)
    cfg, _ = load_yaml(cfg_path)
    graph = graph or (cfg.get("task_args") or {}).get("graph")
    split_file = split_file or cfg.get("split_file")
    for what, value, option in (("graph folder", graph, "--graph"), ("split file", split_file, "--split")):
        if not value or not Path(value).exists():
            raise InputError(f"the {what} this evaluation used, {value!r}, is not here; give it with {option}",
                             path=cfg_path)
    kg = MMKG.load(graph)
    records = {r.id: r for r in load_mars_split(split_file, kg)}
    preds = []
    for line, p in read_jsonl(d / "predictions.jsonl", "predictions file"):
        missing = [k for k in PREDICTION_FIELDS if k not in p]
        if missing:
            raise InputError(f"field {missing[0]!r} is missing (a prediction of `mrmkg eval` has "
                             f"{', '.join(PREDICTION_FIELDS)})", path=d / "predictions.jsonl", line=line)
        if p["id"] not in records:
            raise InputError(f"example {p['id']!r} is not in the split file {split_file}",
                             path=d / "predictions.jsonl", line=line)
        preds.append(p)
    return EvalFolder(d, kg, records, preds, cfg.get("task_args") or {})


def select(preds: Sequence[dict], ids: Sequence[str] = (), limit: int = 3, wrong: bool = False,
           versus: Sequence[dict] | None = None) -> list[dict]:
    """The predictions named by ``ids`` (in that order), else the first ``limit`` ones: only those whose gold
    answer is not ranked first, with ``wrong``. With ``versus`` (another run's predictions over the same
    examples): only the examples where the two runs disagree at rank 1, this run right and the other wrong (with
    ``wrong``: this run wrong and the other right); each gets ``versus_rank``, the other run's rank."""
    other = None if versus is None else {p["id"]: p["rank"] for p in versus}
    if ids:
        by_id = {p["id"]: p for p in preds}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise InputError(f"no prediction with id {missing[0]!r} (ids look like {preds[0]['id']!r})")
        chosen = [by_id[i] for i in ids]
    elif other is None:
        chosen = [p for p in preds if not wrong or p["rank"] > 1]
    else:
        if set(other) != {p["id"] for p in preds}:
            raise InputError("--versus: the two evaluations are not over the same examples")
        chosen = [p for p in preds if (p["rank"] == 1) != wrong and (other[p["id"]] == 1) == wrong]
    if other is not None:
        chosen = [{**p, "versus_rank": other.get(p["id"])} for p in chosen]
    return chosen if ids else chosen[:limit]


def explain(folder: EvalFolder, pred: dict) -> dict:
    """One prediction in names: JSON-ready (see the module docstring for what it holds). Retrieved triples
    come in the order the model got them; ``in_text`` / ``in_graph`` say whether the run's prompt
    (``task_args.prompt``) wrote a triple as a fact and whether its subgraph went through the graph encoder."""
    kg, r = folder.kg, folder.records[pred["id"]]

    def ent(e: int) -> dict:
        return {"id": kg.entity_ids[e], "name": kg.entity_names[e]}

    def ent_id(eid: str) -> dict:
        return ent(kg.entity_index(eid))

    def rel_id(rid: str) -> dict:
        try:
            return {"id": rid, "name": kg.relation_names[kg.relation_index(rid)]}
        except KeyError:  # a split file's gold relation the graph does not define
            return {"id": rid, "name": rid}

    prompt = folder.task_args.get("prompt", MarsTaskConfig.prompt)
    as_text = folder.task_args.get("text_triples", MarsTaskConfig.text_triples) if prompt in FACT_PROMPTS else 0
    retrieved = []
    for i, (t, score) in enumerate(pred["retrieved"]):
        h, rel, tail = kg.triples[t].tolist()
        retrieved.append({"triple": t, "head": kg.entity_names[h], "relation": kg.relation_names[rel],
                          "tail": kg.entity_names[tail], "score": score, "in_text": i < as_text,
                          "in_graph": prompt in GRAPH_PROMPTS})
    return {
        "id": pred["id"], "mode": pred["mode"], "sides": pred["sides"],
        "example": [ent(r.head), ent(r.tail)], "question": ent(r.question),
        "relation": rel_id(r.relation) if r.relation else None,
        "gold": ent(r.answer), "rank": pred["rank"], "prompt": prompt,
        **({"versus_rank": pred["versus_rank"]} if "versus_rank" in pred else {}),
        "top10": [{**ent_id(e), "score": s, "gold": e == pred["gold"]} for e, s in pred["top10"]],
        "retrieved": retrieved,
        "memory": [{**ent_id(e), "relation": rel_id(rel), "count": c} for e, rel, c in pred.get("memory") or []],
        "copy": ent_id(pred["copy"]) if pred.get("copy") else None,
    }


def named_entities(kg, triple_ids: Sequence[int], memory: Sequence = (), copy: str | None = None) -> set[int]:
    """The entities a piece of knowledge names: heads and tails of ``triple_ids``, the partners of ``memory``
    (``[entity id, relation id, count]`` rows, as in predictions.jsonl) and the ``copy`` node's entity id."""
    tri = kg.triples[list(triple_ids)] if len(triple_ids) else kg.triples[:0]
    named = set(tri[:, 0].tolist()) | set(tri[:, 2].tolist())
    named |= {kg.entity_index(e) for e, _, _ in memory}
    if copy:
        named.add(kg.entity_index(copy))
    return named


SOURCES = ("copy node", "memory partner", "triples only")
_SOURCE_ROWS = {"copy node": "  as the copy node", "memory partner": "  as a memory partner",
                "triples only": "  in the triples only"}


def answer_source(folder: EvalFolder, pred: dict) -> str | None:
    """Where the prediction's knowledge names the gold answer, the first of :data:`SOURCES` that does: the copy
    node, an analogy-memory partner, or only the head or tail of a retrieved triple; ``None`` when nothing does."""
    kg, answer = folder.kg, folder.records[pred["id"]].answer
    if pred.get("copy") and kg.entity_index(pred["copy"]) == answer:
        return "copy node"
    if answer in named_entities(kg, [], pred.get("memory") or []):
        return "memory partner"
    if answer in named_entities(kg, [t for t, _ in pred["retrieved"]]):
        return "triples only"
    return None


def answer_in_knowledge(folder: EvalFolder, pred: dict) -> bool:
    """Whether the gold answer is among the entities the prediction's knowledge names (:func:`answer_source`)."""
    return answer_source(folder, pred) is not None


def coverage_summary(folder: EvalFolder) -> dict:
    """Is retrieval or ranking the bottleneck? The share of examples whose gold answer the retrieved knowledge
    names, and the ranking metrics of those examples (also split by :func:`answer_source`) and of the others.
    Empty groups are ``None``."""
    preds = folder.predictions
    src = [answer_source(folder, p) for p in preds]

    def metrics(keep) -> dict | None:
        ranks = [p["rank"] for p, s in zip(preds, src) if keep(s)]
        return ranking_metrics(ranks) if ranks else None

    inside = sum(s is not None for s in src)
    return {"n": len(preds), "answer_in_knowledge": inside / max(len(preds), 1),
            "all": ranking_metrics([p["rank"] for p in preds]),
            "answer in knowledge": metrics(lambda s: s is not None),
            "by_source": {k: metrics(lambda s, k=k: s == k) for k in SOURCES},
            "answer not in knowledge": metrics(lambda s: s is None)}


def print_coverage(summary: dict, console=None) -> None:
    """:func:`coverage_summary` as a table: one row per group, Hits@1/3/10 and MRR."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"the gold answer is named by the retrieved knowledge in {summary['answer_in_knowledge']:.1%} "
                    f"of {summary['n']} examples")
    for col in ("examples", "n", "Hits@1", "Hits@3", "Hits@10", "MRR"):
        t.add_column(col, justify="left" if col == "examples" else "right")
    rows = [("all", summary["all"]), ("answer in knowledge", summary["answer in knowledge"]),
            *((_SOURCE_ROWS[k], m) for k, m in summary["by_source"].items()),
            ("answer not in knowledge", summary["answer not in knowledge"])]
    for name, m in rows:
        if m is None:
            t.add_row(name, "0", "-", "-", "-", "-")
        else:
            t.add_row(name, str(m["n"]), *(f"{m[x]:.3f}" for x in ("hits@1", "hits@3", "hits@10", "mrr")))
    (console or Console()).print(t)


def subgraph_of(folder: EvalFolder, pred: dict):
    """The subgraph behind ``pred`` (retrieved triples, the analogy's entities and memory edges) for
    :func:`mrmkg.viz.render_subgraph`."""
    from mrmkg.kg.subgraph import Subgraph

    kg, r = folder.kg, folder.records[pred["id"]]
    triples, scores = zip(*pred["retrieved"]) if pred["retrieved"] else ((), ())
    sg = Subgraph.from_triples(kg, list(triples), list(scores), seeds=[r.question, r.head, r.tail],
                               query=f"{kg.entity_names[r.head]} : {kg.entity_names[r.tail]} :: "
                                     f"{kg.entity_names[r.question]} : ?")
    return sg.with_memory([(r.question, kg.relation_index(rel), kg.entity_index(e), c)
                           for e, rel, c in pred.get("memory") or []])


def print_explanation(e: dict, console=None) -> None:
    """``explain``'s dict as rich tables: the analogy, the top ten and the knowledge behind them."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def nm(x: dict) -> str:  # graph names are data, never rich markup ("[...]" stays as written)
        return escape(f"{x['name']} ({x['id']})")

    console = console or Console()
    h, t = e["example"]
    rel = f", gold relation {escape(e['relation']['name'])} (not a model input)" if e["relation"] else ""
    console.print(f"[bold]{escape(e['id'])}[/]: {nm(h)} : {nm(t)} :: {nm(e['question'])} : ?   mode {e['mode']}, "
                  f"given as {' / '.join(e['sides'])}{rel}")
    versus = f", rank {e['versus_rank']} in the other run" if "versus_rank" in e else ""
    console.print(f"gold {nm(e['gold'])}: rank [bold]{e['rank']}[/]{versus}   "
                  f"(prompt {e['prompt']})")
    top = Table(title="top 10")
    for col, kw in (("#", {"justify": "right"}), ("entity", {}), ("score", {"justify": "right"})):
        top.add_column(col, **kw)
    for i, c in enumerate(e["top10"], 1):
        name = nm(c)
        top.add_row(str(i), f"[bold green]{name} (gold)[/]" if c["gold"] else name, f"{c['score']:.4f}")
    console.print(top)
    if e["retrieved"]:
        kn = Table(title=f"{len(e['retrieved'])} retrieved triples, in the order the model got them")
        for col, kw in (("triple", {"justify": "right"}), ("head", {}), ("relation", {}), ("tail", {}),
                        ("score", {"justify": "right"}), ("given as", {})):
            kn.add_column(col, **kw)
        for k in e["retrieved"]:
            given = " + ".join(w for w, on in (("text", k["in_text"]), ("graph", k["in_graph"])) if on) or "-"
            kn.add_row(str(k["triple"]), escape(k["head"]), escape(k["relation"]), escape(k["tail"]),
                       f"{k['score']:.3f}", given)
        console.print(kn)
    if e["memory"]:
        mem = Table(title="analogy memory (training pairs of the question entity)")
        for col, kw in (("partner", {}), ("relation", {}), ("seen", {"justify": "right"})):
            mem.add_column(col, **kw)
        for m in e["memory"]:
            mem.add_row(nm(m), nm(m["relation"]),
                        f"{m['count']:g}")
        console.print(mem)
    if e["copy"]:
        console.print(f"copy node: {nm(e['copy'])}, the example's tail")

