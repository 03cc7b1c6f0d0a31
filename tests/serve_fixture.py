"""A small real demo checkpoint for the serve tests and benchmark: the tiny demo world, a tiny random
LLaMA, and the packaged MiniLM / EfficientNet-Lite0 encoders (recorded by name, so a `mrmkg serve`
subprocess loads them as it would for any checkpoint). Trained with the demo's own ladder code, a few
steps: the answers are not good, but they are the checkpoint's, which is what serving must return."""
from __future__ import annotations

from pathlib import Path

TINY_WORLD = dict(n_creatures=20, n_distractors=4, n_places=4, n_foods=8, n_materials=4, n_clans=3)
TINY_MODEL = {"dtype": "fp32", "adapter_length": "nodes", "gnn_hidden": 16, "gnn_heads": 2, "gnn_relation_dim": 8,
              "gnn_num_blocks": 0}


def build_checkpoint(root: Path) -> dict:
    """Train the ``align`` rung (facts + graph + images) of a tiny demo under ``root``.

    Returns ``{"run": run folder, "world": world folder, "image": a question picture,
    "question": a question of the picture's template, "analogy": (head, tail, question) names}``."""
    import os

    from rich.console import Console

    from mrmkg.demo import Demo, DemoConfig
    from test_model_common import save_tiny_llm

    root = Path(root)
    os.environ.setdefault("MRMKG_CACHE", str(root / "cache"))
    llm_dir = root / "tiny_llm"
    if not (llm_dir / "config.json").is_file():
        save_tiny_llm("llama", llm_dir)
    cfg = DemoConfig(out=str(root / "demo"), world=TINY_WORLD, llm=str(llm_dir), text_encoder="minilm",
                     vision_encoder="efficientnet-lite0", rungs=("align",), train_per_type=4, eval_per_type=3,
                     stage1_per_type=4, steps=2, stage1_steps=2, batch_size=4, model=TINY_MODEL, progress=False)
    demo = Demo(cfg, console=Console(quiet=True))
    demo.prepare()
    run = Path(demo.run_ladder()["align"]["run"])
    world = demo.world
    kg = world.kg
    img_q = next(q for q in world.questions["dev"] if q.type == "image")
    ana = next(q for q in world.questions["dev"] if q.type == "analogy")
    return {"run": run, "world": Path(world.root), "image": Path(img_q.image), "question": img_q.text,
            "analogy": tuple(kg.entity_names[kg.entity_index(e)] for e in (*ana.example, ana.subject)),
            "text_question": next(q.text for q in world.questions["dev"] if q.type == "text")}


def same_ranking(got: list[tuple[str, float]], ref: list[tuple[str, float]], tol: float = 1e-5) -> bool:
    """Two top-k lists ``[(id, score)]`` agree: the scores position by position within ``tol`` relative
    to the score (absolute below 1: a batch of several questions runs other matrix shapes than one
    alone, so the last float bits differ, and through a 30-layer LLM they add up to ~3e-6 of a score),
    and the ids equal except where ``ref`` has a tie within that tolerance (an exact tie's order can
    flip with those bits), at a position tied with another candidate or at the last one (tied with a
    candidate beyond k)."""
    def close(a: float, b: float) -> bool:
        return abs(a - b) <= tol * max(1.0, abs(b))

    if len(got) != len(ref) or not all(close(g[1], r[1]) for g, r in zip(got, ref)):
        return False
    for i, (g, r) in enumerate(zip(got, ref)):
        if g[0] != r[0]:
            tied = [x for x, s in ref if close(s, r[1]) and x != r[0]]
            if g[0] not in tied and i != len(ref) - 1:  # the last may be tied with a candidate beyond k
                return False
    return True
