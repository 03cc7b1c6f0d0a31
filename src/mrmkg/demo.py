"""``mrmkg demo``: the whole method, end to end, on the built-in world (what ``make demo`` runs).

Steps (each cached, so a second run only prints):

1. generate the world (:func:`mrmkg.tasks.demo.world.build_world`, cached by its config key);
2. build its index (:meth:`mrmkg.kg.index.KGIndex.build`, beside the graph, cached by key);
3. train and evaluate the ablation ladder (:data:`RUNGS`), each rung a :class:`~mrmkg.tasks.demo.task.DemoTask`
   run through the training engine; rungs (ii)-(iv) start from rung (i)'s trained weights and train
   ``warm_steps`` more (``warm_start``: what every rung shares -- the answer tokens, the visual adapter --
   is learnt once); rung (v) first trains stage 1 (:class:`~mrmkg.tasks.demo.task.DemoStage1Task`)
   and starts stage 2 from it (``init_from``). A rung's folder is named by a hash of everything that
   determines it (world, index, model, task and training config, and for (v) the stage-1 hash),
   and holds ``final/`` weights, ``predictions.jsonl`` and ``result.json``; a complete folder is
   reused, so only changed rungs retrain;
4. print one table (rung x image / text / analogy / overall accuracy on the evaluated split, plus
   training time), answer three sample questions with their retrieved subgraphs, draw one
   subgraph (:func:`mrmkg.viz.render_subgraph`) and say where everything was written.

Output folder: ``metrics.json`` (every rung's metrics, timings, the image-question gain),
``table.md``, ``predictions/<rung>.jsonl``, ``subgraph.png``, ``runs/`` (the rung folders).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.markup import escape

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_write_json, atomic_write_text
from mrmkg.metrics.choice import accuracy_by_type
from mrmkg.pipeline import Pipeline
from mrmkg.tasks.demo.task import QUESTION_TYPES, DemoStage1Task, DemoTask, DemoTaskConfig
from mrmkg.engine import OptimConfig, TrainConfig, load_train_config, train
from mrmkg.yamlconfig import Source, from_dict, to_dict

DEMO_FORMAT = 3  # bump when what a rung computes or stores changes (it keys the rung folders); 3: checkpoint format 2


@dataclass(frozen=True)
class Rung:
    """One row of the ladder; each adds one thing to the row before."""

    name: str
    label: str
    facts: bool = False     # retrieved triples written into the prompt (graph rungs: see graph_keeps_facts)
    graph: bool = False     # subgraph through RGAT + knowledge adapter
    align: bool = False     # triplet alignment loss on
    pretrain: bool = False  # stage 1 first, stage 2 from its weights


RUNGS = (
    Rung("no_kg", "(i) no KG"),
    Rung("kg_text", "(ii) + KG as text triples", facts=True),
    Rung("mmkg", "(iii) + MMKG via RGAT + adapter", facts=True, graph=True),
    Rung("align", "(iv) + alignment loss", facts=True, graph=True, align=True),
    Rung("pretrain", "(v) + stage-1 pretraining", facts=True, graph=True, align=True, pretrain=True),
)

#: the default rungs: (i) no knowledge and (iv) the full method (text facts, graph, alignment)
STORY_RUNGS = ("no_kg", "align")
LADDER = tuple(r.name for r in RUNGS)


@dataclass
class DemoConfig:
    """Everything ``mrmkg demo`` does; every field enters the cache keys of what it affects."""

    out: str = field(default="runs/demo", metadata={"help": "output folder (metrics, table, predictions, picture, rung runs)"})
    seed: int = field(default=0, metadata={"help": "seed of the world, sampling, model init and data order"})
    world: dict = field(default_factory=dict, metadata={"help": "WorldConfig fields (default: the default world)"})
    llm: str = field(default="smollm2-135m", metadata={"help": "frozen LLM (load_llm name, HF id or folder)"})
    text_encoder: str = field(default="minilm", metadata={"help": "text encoder of the index and text queries"})
    vision_encoder: str = field(default="efficientnet-lite0", metadata={"help": "vision encoder of image nodes and question pictures"})
    rungs: tuple = field(default=STORY_RUNGS, metadata={
        "help": "rungs to run, by name: by default the two that tell the story (no KG, and the full method without "
                "stage 1), so a first run stays short; the whole ladder: --set rungs=[no_kg,kg_text,mmkg,align,pretrain]"})
    eval_split: str = field(default="test", metadata={"help": "split the table reports (dev or test)"})
    train_per_type: int = field(default=300, metadata={"help": "training questions per type (seeded sample)"})
    eval_per_type: int = field(default=40, metadata={"help": "evaluated questions per type (the split's first ones)"})
    stage1_per_type: int = field(default=160, metadata={"help": "stage-1 facts per form (text / image) (seeded sample)"})
    steps: int = field(default=120, metadata={"help": "optimizer steps of a rung trained from scratch: rung (i), rung (v) after stage 1, and every rung when warm_start is off"})
    warm_start: bool = field(default=True, metadata={
        "help": "rungs (ii)-(iv) start from rung (i)'s trained weights (the answer tokens and the visual adapter, "
                "which every rung has) and train warm_steps more, so the knowledge rungs do not relearn what (i) "
                "learnt; (i) is trained first even when it is not listed. Off: every rung trains `steps` from scratch"})
    warm_steps: int = field(default=100, metadata={
        "help": "optimizer steps of a rung that starts from rung (i) (warm_start); measured on image / text questions: "
                "(iv) from (i) 47.5 / 35.0 % after 100 steps, 37.5 / 27.5 % after 80, from scratch 35.0 / 17.5 % after "
                "120 (docs/results.md)"})
    stage1_steps: int = field(default=60, metadata={"help": "optimizer steps of stage 1"})
    batch_size: int = field(default=4, metadata={"help": "examples per step (4: half the cost of 8 per step; trade-off measured in docs/results.md)"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (linear decay, 10% warm-up); 3e-3 with batch 4 let some rungs collapse"})
    fact_style: str = field(default="names", metadata={
        "help": "how retrieved facts name entities (DemoTaskConfig.fact_style): names lets the frozen LLM copy the answer"})
    text_triples: int = field(default=5, metadata={"help": "retrieved triples written into the prompt (rung ii; iii-v with graph_keeps_facts)"})
    graph_keeps_facts: bool = field(default=True, metadata={
        "help": "rungs iii-v keep rung ii's text facts beside the MMKG prefix (cumulative ladder). Off = the paper's "
                "Table 3 (the MMKG replaces the textual KG) with ~3x shorter prompts, but measured: image 7.5 %, "
                "text 10 % after 150 steps (docs/results.md): the small frozen LLM copies names it reads"})
    N: int = field(default=6, metadata={"help": "retrieved triples in the subgraph fed to the RGAT (rungs iii-v)"})
    model: dict = field(default_factory=lambda: {"dtype": "fp32", "adapter_length": "nodes", "entity_init": "first",
                                                 "knowledge_gate": True, "pack_sequences": True}, metadata={
        "help": "MRMKGConfig fields for every rung (fp32: bf16 autocast measured slower on the 2-core CPU; entity_init "
                "first: an answer token starts where the LLM scores beginning to write that name; knowledge_gate: the "
                "graph prefix fades in from zero, so rungs iii-v start where rung ii starts; pack_sequences: no LLM compute on "
                "padding, ~15 % faster rungs)"})
    align_weight: float = field(default=0.1, metadata={"help": "lambda of the alignment loss in rungs iv-v"})
    eval_batch_size: int = field(default=16, metadata={"help": "examples per evaluation batch"})
    progress: bool = field(default=True, metadata={"help": "progress bars"})

    def __post_init__(self):
        self.rungs = tuple(self.rungs)
        known = {r.name for r in RUNGS}
        bad = [r for r in self.rungs if r not in known]
        if bad or not self.rungs:
            raise InputError(f"demo rungs {list(self.rungs)}: expected some of {sorted(known)}", path="DemoConfig.rungs")
        if self.eval_split not in ("dev", "test"):
            raise InputError(f"eval_split must be dev or test, got {self.eval_split!r}", path="DemoConfig.eval_split")
        for name in ("steps", "warm_steps", "stage1_steps", "batch_size", "train_per_type", "eval_per_type",
                     "stage1_per_type"):
            if getattr(self, name) < 1:
                raise InputError(f"must be >= 1, got {getattr(self, name)}", path=f"DemoConfig.{name}")


def quick_config(**overrides) -> DemoConfig:
    """``--quick``: a smaller world and a few steps per rung (a smoke run, not a result)."""
    base = DemoConfig(world={"n_creatures": 60, "n_distractors": 12, "n_foods": 16, "n_places": 8, "n_materials": 8,
                             "n_clans": 6},
                      train_per_type=16, eval_per_type=8, stage1_per_type=16, steps=3, warm_steps=2, stage1_steps=2)
    return replace(base, **overrides)


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------- the pipeline
class Demo:
    """The demo pipeline; ``text_encoder`` / ``vision_encoder`` objects replace the registry ones
    (tests pass tiny stand-ins)."""

    def __init__(self, config: DemoConfig, text_encoder=None, vision_encoder=None, console=None):
        from rich.console import Console

        self.config = config
        self.out = Path(config.out).absolute()
        self.console = console or Console()
        self._text, self._vision = text_encoder, vision_encoder

    # -- steps 1-2
    def prepare(self, fresh: bool = False):
        """Build (or reuse) the world and its index; returns the world."""
        from mrmkg.kg.index import IndexConfig, KGIndex
        from mrmkg.tasks.demo.world import WorldConfig, build_world

        cfg = self.config
        wcfg = WorldConfig.from_dict({"seed": cfg.seed, **cfg.world})
        t0 = time.perf_counter()
        self.world = build_world(wcfg, force=fresh, progress=cfg.progress)
        self.console.print(f"[bold]world[/] {self.world.root} ({self.world.kg.num_entities} entities, "
                           f"{self.world.kg.num_triples} triples, {self.world.kg.num_images} pictures) "
                           f"in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        if self._text is None:
            from mrmkg.encoders.registry import get_text_encoder

            self._text = get_text_encoder(cfg.text_encoder)
        if self._vision is None:
            from mrmkg.encoders.registry import get_vision_encoder

            self._vision = get_vision_encoder(cfg.vision_encoder)
        self.index = KGIndex.build(self.world.kg, IndexConfig(text_encoder=cfg.text_encoder, vision_encoder=cfg.vision_encoder),
                                   directory=self.world.kg_dir, text_encoder=self._text, vision_encoder=self._vision,
                                   progress=cfg.progress, force=fresh)
        self.console.print(f"[bold]index[/] {self.world.kg_dir / 'index'} in {time.perf_counter() - t0:.1f} s")
        return self.world

    # -- step 3
    def _task_args(self, rung: Rung, stage1: bool = False) -> dict:
        cfg = self.config
        facts = rung.facts and (cfg.graph_keeps_facts or not rung.graph)
        return {"world": str(self.world.root), "eval_split": cfg.eval_split, "facts": facts, "graph": rung.graph,
                "text_triples": cfg.text_triples, "N": cfg.N, "fact_style": cfg.fact_style,
                "max_train_per_type": cfg.stage1_per_type if stage1 else cfg.train_per_type,
                "max_eval_per_type": cfg.eval_per_type}

    def _model_args(self, rung: Rung) -> dict:
        cfg = self.config
        return {**cfg.model, "llm": cfg.llm, "text_encoder": cfg.text_encoder, "vision_encoder": cfg.vision_encoder,
                "align_weight": cfg.align_weight if rung.align else 0.0}

    def _train_config(self, rung: Rung, out: Path, steps: int, init_from: str | None, stage1: bool):
        cfg = self.config
        return TrainConfig(
            task="demo_stage1" if stage1 else "demo",
            task_args=self._task_args(rung, stage1), model=self._model_args(rung), init_from=init_from,
            output_dir=str(out), seed=cfg.seed, epochs=1000, max_steps=steps, batch_size=cfg.batch_size,
            precision="fp32" if self._model_args(rung).get("dtype") == "fp32" else "bf16",
            optim=OptimConfig(lr=cfg.lr, warmup_ratio=0.1), eval_at_end=False, log_every=5, progress=cfg.progress)

    def _run_key(self, tc, parent: str | None) -> str:
        d = to_dict(tc)
        for k in ("output_dir", "init_from", "progress"):
            d.pop(k, None)
        d["task_args"] = {k: v for k, v in d["task_args"].items() if k != "world"}
        return _key({"format": DEMO_FORMAT, "train": d, "world": self.world.config.key(),
                     "index": self.index.manifest.get("key"), "parent": parent})

    def _train(self, rung: Rung, stage1: bool, parent: Path | None, fresh: bool,
               steps: int | None = None) -> tuple[Path, dict]:
        """Train one run (or reuse it), ``steps`` steps (default: the config's for its kind), from
        ``parent``'s weights when given. Returns (run folder, result dict)."""
        cfg = self.config
        steps = steps or (cfg.stage1_steps if stage1 else cfg.steps)
        tc = self._train_config(rung, Path("."), steps, str(parent / "final") if parent else None, stage1)
        key = self._run_key(tc, parent.name if parent else None)
        run = self.out / "runs" / f"{'stage1' if stage1 else rung.name}-{key}"
        done = run / "result.json"
        if done.is_file() and not fresh:
            return run, json.loads(done.read_text(encoding="utf-8")) | {"cached": True}
        if run.exists():
            shutil.rmtree(run)
        tc.output_dir = str(run)
        cls = DemoStage1Task if stage1 else DemoTask
        task = cls(from_dict(DemoTaskConfig, tc.task_args, Source(), prefix="task_args."), tc.model, cfg.seed,
                   text_encoder=self._text, vision_encoder=self._vision)
        what = "stage 1 (graph QA)" if stage1 else rung.label
        start = f" from {parent.name.split('-')[0]}'s weights" if parent else ""
        self.console.print(f"[bold cyan]train[/] {what}: {steps} steps x {cfg.batch_size}{start}")
        t0 = time.perf_counter()
        res = train(tc, task=task, overwrite=True)
        train_s = time.perf_counter() - t0
        result = {"rung": "stage1" if stage1 else rung.name, "train_seconds": round(train_s, 2), "steps": res.global_step,
                  "final_loss": res.final_loss, "key": key}
        if not stage1:
            t0 = time.perf_counter()
            preds = task.predict(task.model, task.eval_examples(cfg.eval_split), cfg.eval_batch_size,
                                 progress=cfg.progress)
            result["eval_seconds"] = round(time.perf_counter() - t0, 2)
            result["metrics"] = accuracy_by_type(preds, QUESTION_TYPES)
            atomic_write_text(run / "predictions.jsonl", "".join(json.dumps(p) + "\n" for p in preds))
        atomic_write_json(done, result)
        return run, result | {"cached": False}

    def run_ladder(self, fresh: bool = False) -> dict:
        """Train/evaluate every configured rung; returns ``{rung name: result}``."""
        cfg = self.config
        results, runs = {}, {}
        stage1_run = None
        base = RUNGS[0]

        def warm(r: Rung) -> bool:  # starts from (i)'s weights
            return cfg.warm_start and not r.pretrain and r != base

        wanted = [r for r in RUNGS if r.name in cfg.rungs]
        if any(map(warm, wanted)) and base not in wanted:
            wanted.insert(0, base)  # the knowledge rungs start from (i): train it even when not listed
        for rung in wanted:
            parent, steps = None, None
            if rung.pretrain:
                if stage1_run is None:
                    stage1_run, r1 = self._train(rung, True, None, fresh)
                    results["stage1"] = r1
                parent = stage1_run
            elif warm(rung):
                parent, steps = runs[base.name], cfg.warm_steps
            run, res = self._train(rung, False, parent, fresh, steps)
            res["run"], res["init_from"] = str(run), parent.name if parent else None
            runs[rung.name], results[rung.name] = run, res
            m = res["metrics"]
            self.console.print(f"  {rung.label}: " + ", ".join(f"{t} {100 * m[t]:.1f}%" for t in ("image", "text", "analogy", "overall") if t in m)
                               + (" (cached)" if res.get("cached") else f" (train {res['train_seconds']:.0f} s)"))
        return results

    # -- step 4
    def report(self, results: dict, t_start: float) -> dict:
        from rich.table import Table

        cfg = self.config
        rows = [(r, results[r.name]) for r in RUNGS if r.name in results]
        types = ("image", "text", "analogy", "overall")
        table = Table(title=f"MR-MKG ablation ladder on the demo world ({cfg.eval_split} accuracy, %)")
        table.add_column("rung")  # the one column that may wrap on a narrow terminal
        for t in (*types, "steps", "train s"):
            table.add_column(t, justify="right", no_wrap=True)
        md = ["| rung | " + " | ".join(types) + " | steps | train s |", "|---|" + "---:|" * (len(types) + 2)]
        for r, res in rows:
            m = res["metrics"]
            # a rung that started from another run's weights (stage 1, or (i) with warm_start): that run's
            # steps and seconds, then its own
            before = results["stage1"] if r.pretrain else results[RUNGS[0].name] if res.get("init_from") else None
            steps, secs = str(res["steps"]), f"{res['train_seconds']:.0f}"
            if before:
                steps, secs = f"{before['steps']}+{steps}", f"{before['train_seconds']:.0f}+{secs}"
            cells = [f"{100 * m[t]:.1f}" if t in m else "-" for t in types]
            table.add_row(r.label, *cells, steps, secs)
            md.append(f"| {r.label} | " + " | ".join(cells) + f" | {steps} | {secs} |")
        self.console.print(table)
        n = rows[-1][1]["metrics"]["n"] if rows else {}
        self.console.print(f"questions evaluated per type: {n}")
        summary = {"config": asdict(cfg), "world": str(self.world.root), "rungs": {k: v for k, v in results.items()}}
        if "no_kg" in results and len(rows) > 1 and "image" in rows[-1][1]["metrics"]:
            base = results["no_kg"]["metrics"]["image"]
            full_name, full = rows[-1][0].label, rows[-1][1]["metrics"]["image"]
            gain = 100 * (full - base)
            ok = gain >= 30
            summary["image_gain_points"] = round(gain, 1)
            self.console.print(f"image questions: {full_name} {100 * full:.1f}% vs (i) no KG {100 * base:.1f}% -> "
                               f"[{'green' if ok else 'red'}]{gain:+.1f} points[/] (target: >= +30)")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "table.md", "\n".join(md) + "\n")
        pred_dir = self.out / "predictions"
        pred_dir.mkdir(exist_ok=True)
        for r, res in rows:
            shutil.copyfile(Path(res["run"]) / "predictions.jsonl", pred_dir / f"{r.name}.jsonl")
        picture = self.samples(rows[-1][0], Path(rows[-1][1]["run"])) if rows else None
        summary["picture"] = str(picture) if picture else None
        summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
        atomic_write_json(self.out / "metrics.json", summary)
        self.console.print(f"[bold]done in {summary['total_seconds']:.0f} s[/]: results in {self.out}/ "
                           f"(metrics.json, table.md, predictions/*.jsonl, picture {picture})")
        return summary

    def pipeline(self, rung: Rung, run: Path) -> Pipeline:
        """The trained rung in ``run`` as a :class:`~mrmkg.pipeline.Pipeline` (with the demo's encoders)."""
        tc = load_train_config(run / "final" / "train_config.yaml")
        task = DemoTask(from_dict(DemoTaskConfig, tc.task_args, Source(), prefix="task_args."), tc.model, tc.seed,
                        text_encoder=self._text, vision_encoder=self._vision)
        return Pipeline(task, task.load_model(run / "final" / "model"), run)

    def samples(self, rung: Rung, run: Path) -> Path | None:
        """Ask ``rung``'s checkpoint one evaluated question per type, as a user would (through the
        :class:`~mrmkg.pipeline.Pipeline`, the path ``mrmkg ask`` takes), and draw one subgraph."""
        kg, w = self.world.kg, self.world
        pipe = self.pipeline(rung, run)
        picture, asked = None, []
        self.console.print(f"\n[bold]sample {self.config.eval_split} questions, asked of {rung.label}[/]")
        for t in ("image", "text", "analogy"):
            q = next((q for q in w.questions[self.config.eval_split] if q.type == t), None)
            if q is None:
                continue
            if t == "analogy":
                query = {"analogy": [kg.entity_names[kg.entity_index(e)] for e in (*q.example, q.subject)]}
            else:
                query = {"question": q.text, "image": q.image}
            ans = pipe(**query, top_k=3)
            gold = f"{kg.entity_names[kg.entity_index(q.answer)]} ({q.answer})"
            mark = "[green]right[/]" if ans.answer_id == q.answer else "[red]wrong[/]"
            self.console.print(f"[bold]{t}[/] {q.id}: {escape(q.text)}" + (f"  [dim](picture {q.image})[/]" if q.image else ""))
            self.console.print(f"  answer {escape(ans.answer)} ({ans.answer_id}), gold {escape(gold)}: {mark}  "
                               + "[dim]top 3: " + ", ".join(f"{escape(c.name)} {c.score:.2f}" for c in ans.candidates) + "[/]")
            triples = (ans.subgraph or {}).get("triples", [])
            if triples:
                self.console.print("  retrieved subgraph (triple id, triple, score):")
                for r in triples:
                    self.console.print(f"    t{r['id']:<5} {escape(kg.verbalise(r['id']))}  [dim]{r['score']:.3f}[/]")
            else:
                self.console.print("  (this rung retrieves nothing)")
            if picture is None and triples:
                picture = pipe.draw(ans, self.out / "subgraph.png", title=f"{q.id}: {q.text} (gold: {gold})")
                self.console.print(f"  picture of this subgraph: {picture}")
            asked.append(q)
        image_q = next((q for q in asked if q.type == "image"), None)
        if image_q is not None:
            self.console.print(f"\n[bold]ask it yourself:[/] mrmkg ask {run} \"{image_q.text}\" --image {image_q.image}")
        atomic_write_text(self.out / "checkpoint.txt", f"{run}\n")  # what `make serve` serves by default
        self.console.print(f"[bold]serve it[/] (a page and an API on http://127.0.0.1:8000/): mrmkg serve {run}"
                           "   (or: make serve)")
        return picture


def run_demo(config: DemoConfig | None = None, fresh: bool = False, text_encoder=None, vision_encoder=None,
             console=None) -> dict:
    """World -> index -> ladder -> table, samples and picture. Returns the ``metrics.json`` content."""
    t0 = time.perf_counter()
    demo = Demo(config or DemoConfig(), text_encoder, vision_encoder, console)
    demo.prepare(fresh)
    results = demo.run_ladder(fresh)
    return demo.report(results, t0)
