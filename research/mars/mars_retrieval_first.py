"""How often retrieval alone would rank the answer first, where only a retrieved triple names it.

For each example of an `mrmkg eval` folder whose gold answer is named by the retrieved triples only (not
the copy node, not a memory partner: ``mrmkg.explain.answer_source``), every entity the triples name but
the question is scored by the best retrieval score of its triples. The script counts the examples where
that score puts the answer first, where the model ranked it first, and both, which tells whether the
retrieval score carries information the model's ranking lacks (research/log.md, session 16).

    .venv/bin/python research/mars/mars_retrieval_first.py RUN/eval-dev [RUN2/eval-dev ...]
"""
from __future__ import annotations

import argparse

from mrmkg.explain import answer_source, open_eval


def count(eval_dir: str) -> dict:
    folder = open_eval(eval_dir)
    kg = folder.kg
    out = dict(examples=0, retrieval_first=0, model_first=0, both=0, answer_is_question=0, nodes=0)
    for pred in folder.predictions:
        if answer_source(folder, pred) != "triples only":
            continue
        rec = folder.records[pred["id"]]
        if rec.answer == rec.question:        # named by the triples, but as the question itself
            out["answer_is_question"] += 1
            continue
        best: dict[int, float] = {}
        for t, score in pred["retrieved"]:
            h, _, tail = kg.triples[t].tolist()
            for e in (h, tail):
                best[e] = max(best.get(e, float("-inf")), score)
        best.pop(rec.question, None)
        top = max(best, key=best.get)         # ties: the first triple's entity, as retrieval ordered them
        r, m = top == rec.answer, pred["rank"] == 1
        out["examples"] += 1
        out["nodes"] += len(best)
        out["retrieval_first"] += r
        out["model_first"] += m
        out["both"] += r and m
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("eval_dirs", nargs="+", help="`mrmkg eval --task mars` output folders")
    for d in ap.parse_args().eval_dirs:
        c = count(d)
        print(f"{d}: {c['examples']} examples named by a triple only ({c['nodes'] / max(c['examples'], 1):.1f} "
              f"candidate nodes each; {c['answer_is_question']} more where the answer is the question): "
              f"retrieval first {c['retrieval_first']}, model first {c['model_first']}, both {c['both']}, "
              f"either {c['retrieval_first'] + c['model_first'] - c['both']}")


if __name__ == "__main__":
    main()
