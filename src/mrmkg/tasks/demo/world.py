"""The built-in multimodal demo world: an invented MMKG plus closed-set question sets.

Why a generated world: a user must see knowledge help before owning any dataset, and a language
model must not already know the answers. Every entity here has an invented, pronounceable name
(``Vrosk``, ``Taimbe``...), a rendered picture and facts drawn at random, so an answer can only
come from the graph (and, for image questions, from matching the picture to the graph's image
nodes).

The world (sizes in :class:`WorldConfig`):

* entity types: creatures (asked about), distractor creatures (in the graph, never asked about),
  places, foods, materials, clans;
* relations: ``lives in`` (creature -> place), ``eats`` (creature -> food), ``preys on``
  (creature -> creature), ``belongs to`` (creature -> clan), ``made of`` (creature -> material),
  ``grows in`` (food -> place), ``found in`` (material -> place), ``borders`` (place -> place),
  plus the reserved ``image of``. Structure is realistic rather than uniform: creatures share
  habitats, a creature mostly eats a food that grows where it lives and preys on a neighbour
  (chains one hop long: creature -lives in-> place <-grows in- food), and places border each
  other (triples that retrieval must learn to ignore).
* one picture per entity (64 x 64 PNG): a shape, colour, fill pattern, mark (eyes, antennae,
  legs or none) and size, a unique combination per entity drawn independently of its facts, so
  the picture identifies the entity but says nothing about the answer.

Question types (every answer an entity id from a named closed candidate set):

* ``image``: "What does this creature eat?" with a *different* rendering of the creature than
  the graph's (shifted, rotated, rescaled, colour-jittered, noisy): the image must be matched to
  the entity through the graph's image nodes, then one hop followed;
* ``text``: "What does Vrosk eat?", also about foods and materials ("Where does Taimbe grow?");
* ``analogy`` (MARS form): example pair (h, t), question entity q, hidden relation r, answer a
  with (h, r, t) and (q, r, a) in the graph; the example tail never equals the answer, so the
  answer cannot be copied from the prompt.

Splits are by subject entity (creatures, foods, materials are each split train/dev/test), so no
fact of a dev/test subject is the answer fact of, or the example pair of, any training question
(:func:`leaked_facts` checks this; the tests assert it). The graph itself holds every fact: that is
the knowledge the model must learn to retrieve and use.

On disk (``build_world`` writes it atomically; same config -> byte-identical files when built
into the same folder; only ``graph/graph.json`` holds absolute image paths, everything else is
identical wherever it is built)::

    world.json                  config, counts, entity types and visual attributes
    graph/graph.json, graph.npz the MMKG (MMKG.save); image paths are absolute
    images/<entity id>.png      the graph's image nodes
    queries/<question id>.png   the question images (other renderings)
    tsv/{entities,relations,triples,images}.tsv   the same graph in the generic TSV format
    questions/{train,dev,test}.jsonl              one question a line, image paths relative
    candidates.json             candidate set id -> list of entity ids
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_dir, atomic_write_json
from mrmkg.kg.graph import MMKG
from mrmkg.tasks.demo.drawing import BACKGROUNDS, COLOURS, MARKS, PATTERNS, SHAPES, SIZES, png_bytes, render_entity_image

WORLD_FORMAT = 2  # bump when the generator changes what a config produces (it keys the cache)

# --------------------------------------------------------------------------- vocabulary
RELATIONS = [  # (id, name); ids are stable, names are what the text encoder and LLM see
    ("lives_in", "lives in"),
    ("eats", "eats"),
    ("preys_on", "preys on"),
    ("belongs_to", "belongs to"),
    ("made_of", "made of"),
    ("grows_in", "grows in"),
    ("found_in", "found in"),
    ("borders", "borders"),
]
CREATURE_RELATIONS = ("lives_in", "eats", "preys_on", "belongs_to", "made_of")
# relation -> (candidate set of its tail, question about a named subject, question about "this")
TEMPLATES = {
    "lives_in": ("place", "Where does {} live?", "Where does this creature live?"),
    "eats": ("food", "What does {} eat?", "What does this creature eat?"),
    "preys_on": ("creature", "Which creature does {} prey on?", "Which creature does this creature prey on?"),
    "belongs_to": ("clan", "Which clan does {} belong to?", "Which clan does this creature belong to?"),
    "made_of": ("material", "What is {} made of?", "What is this creature made of?"),
    "grows_in": ("place", "Where does {} grow?", "Where does this food grow?"),
    "found_in": ("place", "Where is {} found?", "Where is this material found?"),
}
TYPE_PREFIX = {"creature": "C", "place": "P", "food": "F", "material": "M", "clan": "K"}
TYPE_DESCRIPTION = {
    "creature": "a creature of the demo world",
    "place": "a place in the demo world",
    "food": "a food of the demo world",
    "material": "a material of the demo world",
    "clan": "a clan of creatures in the demo world",
}

# Syllables chosen to sound like words without being English ones (the LLM must not know them).
_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gl", "kr",
           "pl", "sk", "sn", "st", "tr", "vr", "zh", "th", "qu", "x", "y", "w"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ee", "oa", "ui"]
_CODAS = ["", "", "", "n", "r", "k", "sh", "x", "l", "m", "th", "sk"]


@dataclass
class WorldConfig:
    """Sizes and knobs of the generated world. Every field enters the cache key."""

    seed: int = field(default=0, metadata={"help": "random seed: same seed and sizes -> identical world"})
    n_creatures: int = field(default=200, metadata={"help": "creatures that questions are asked about"})
    n_distractors: int = field(default=40, metadata={"help": "extra creatures in the graph that no question asks about"})
    n_places: int = field(default=16, metadata={"help": "places (habitats); foods and materials are spread over them"})
    n_foods: int = field(default=48, metadata={"help": "foods; each grows in one place"})
    n_materials: int = field(default=16, metadata={"help": "materials; each is found in one place"})
    n_clans: int = field(default=12, metadata={"help": "clans that creatures belong to"})
    borders_per_place: int = field(default=2, metadata={"help": "'borders' triples per place (distractor structure)"})
    local_diet: float = field(default=0.8, metadata={"help": "chance a creature eats a food that grows where it lives"})
    local_prey: float = field(default=0.8, metadata={"help": "chance a creature preys on a creature of its own habitat"})
    image_relations: tuple = field(default=CREATURE_RELATIONS,
                                   metadata={"help": "relations asked about in image questions (one question each per creature)"})
    text_relations: tuple = field(default=CREATURE_RELATIONS,
                                  metadata={"help": "creature relations asked about in text questions"})
    object_questions: bool = field(default=True, metadata={"help": "also ask text questions about foods (grows in) and materials (found in)"})
    analogies_per_creature: int = field(default=1, metadata={"help": "MARS-form analogy questions per creature"})
    dev_fraction: float = field(default=0.1, metadata={"help": "fraction of subject entities whose questions form dev"})
    test_fraction: float = field(default=0.2, metadata={"help": "fraction of subject entities whose questions form test"})
    image_size: int = field(default=64, metadata={"help": "side of every rendered PNG, pixels"})
    jitter: float = field(default=1.0, metadata={"help": "strength of the query-image perturbation (0 = the graph's own picture)"})

    def __post_init__(self) -> None:
        self.image_relations = tuple(self.image_relations)
        self.text_relations = tuple(self.text_relations)
        for name in ("n_creatures", "n_places", "n_foods", "n_materials", "n_clans"):
            if getattr(self, name) < 1:
                raise InputError(f"must be >= 1, got {getattr(self, name)}", path=f"WorldConfig.{name}")
        if self.n_creatures + self.n_distractors < 2:
            raise InputError("need at least 2 creatures (one must prey on another)", path="WorldConfig.n_creatures")
        for name in ("image_relations", "text_relations"):
            bad = [r for r in getattr(self, name) if r not in CREATURE_RELATIONS]
            if bad:
                raise InputError(f"unknown relation(s) {bad}; expected some of {list(CREATURE_RELATIONS)}",
                                 path=f"WorldConfig.{name}")
        if not (0 <= self.dev_fraction and 0 <= self.test_fraction and self.dev_fraction + self.test_fraction < 1):
            raise InputError("dev_fraction and test_fraction must be >= 0 and sum to < 1", path="WorldConfig.test_fraction")
        if self.image_size < 16:
            raise InputError(f"must be >= 16 pixels, got {self.image_size}", path="WorldConfig.image_size")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_relations"], d["text_relations"] = list(self.image_relations), list(self.text_relations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "WorldConfig":
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise InputError(f"unknown world config field(s) {extra}; expected some of {sorted(known)}", path="WorldConfig")
        return cls(**d)

    def key(self) -> str:
        """Short content hash of the config and generator version: the default cache folder name."""
        blob = json.dumps({"format": WORLD_FORMAT, **self.to_dict()}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class Question:
    """One closed-set question.

    ``image`` is an absolute path in memory and relative to the world folder on disk. ``subject``
    and ``relation`` are the ground truth behind the question (for analysis and leakage checks);
    for image and analogy questions they are hidden from the model. ``example`` is the analogy's
    example pair ``[head id, tail id]`` (None for other types).
    """

    id: str
    type: str  # "image" | "text" | "analogy"
    text: str
    image: str | None
    answer: str  # entity id
    candidates: str  # candidate set id (key of World.candidates)
    subject: str
    relation: str
    split: str
    example: list | None = None


@dataclass
class World:
    """A generated world on disk: the graph, its questions and candidate sets."""

    root: Path
    config: WorldConfig
    kg: MMKG
    questions: dict  # split -> list[Question]
    candidates: dict  # candidate set id -> list[str] entity ids
    entity_types: dict  # entity id -> type ("creature", "distractor", "place", ...)
    visuals: dict  # entity id -> {"shape", "colour", "pattern", "mark", "size"}
    _pos: dict | None = field(default=None, init=False, repr=False)

    @property
    def kg_dir(self) -> Path:
        """The saved MMKG folder (``MMKG.load(world.kg_dir)``; indexes go beside it)."""
        return self.root / "graph"

    def answer_index(self, q: Question) -> int:
        """Position of the answer in its candidate set (the class label for ranking)."""
        if self._pos is None:
            self._pos = {k: {e: i for i, e in enumerate(v)} for k, v in self.candidates.items()}
        return self._pos[q.candidates][q.answer]

    def all_questions(self) -> list[Question]:
        return [q for s in ("train", "dev", "test") for q in self.questions.get(s, [])]

    def summary(self) -> dict:
        per = {s: {t: sum(q.type == t for q in qs) for t in ("image", "text", "analogy")} for s, qs in self.questions.items()}
        return {"root": str(self.root), **self.kg.stats(), "questions": per}


# --------------------------------------------------------------------------- names
def invent_names(n: int, rng: np.random.Generator, taken: set | None = None) -> list[str]:
    """``n`` unique pronounceable nonsense names of 2-3 syllables (case-insensitively unique,
    also against ``taken``, which is updated)."""
    taken = taken if taken is not None else set()
    out: list[str] = []
    while len(out) < n:
        k = 2 if rng.random() < 0.7 else 3
        parts = []
        for i in range(k):
            s = _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
            if i == k - 1 or rng.random() < 0.3:
                s += _CODAS[rng.integers(len(_CODAS))]
            parts.append(s)
        name = "".join(parts)
        if len(name) < 4 or len(name) > 11 or name.lower() in taken:
            continue
        taken.add(name.lower())
        out.append(name.capitalize())
    return out



# --------------------------------------------------------------------------- generation
def _balanced(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``n`` draws from ``range(k)`` with counts as equal as possible, in random order (so no
    answer is a majority class a model could guess)."""
    return rng.permutation(np.resize(rng.permutation(k), n))


def _assign_visuals(rng: np.random.Generator, ids: list[str]) -> dict:
    """A unique picture per entity, drawn independently of its facts.

    Pretrained CNN features (EfficientNet on ImageNet) separate geometry far better than hue, so
    the geometric combination (shape, pattern, mark) is spread first: the 240 combinations are
    dealt out in random order, and only when entities outnumber them does a combination repeat,
    then with a colour that differs from every earlier holder's (and a different size when
    possible). Measured effect in docs/results.md (image matching).
    """
    geo = [(s, p, m) for s in SHAPES for p in PATTERNS for m in MARKS]
    colours, sizes = list(COLOURS), list(SIZES)
    if len(ids) > len(geo) * len(colours):
        raise InputError(f"{len(ids)} entities exceed the {len(geo) * len(colours)} distinct pictures", path="WorldConfig")
    order = np.concatenate([rng.permutation(len(geo)) for _ in range(-(-len(ids) // len(geo)))])
    used: dict = {}
    out = {}
    for eid, g in zip(ids, order.tolist()):
        s, p, m = geo[g]
        prev = used.setdefault(g, [])
        free = [c for c in colours if c not in {v["colour"] for v in prev}]
        c = free[rng.integers(len(free))]
        z_free = [z for z in sizes if z not in {v["size"] for v in prev}] or sizes
        v = {"shape": s, "colour": c, "pattern": p, "mark": m, "size": z_free[rng.integers(len(z_free))]}
        prev.append(v)
        out[eid] = v
    return out


def _split_ids(rng: np.random.Generator, ids: list[str], cfg: WorldConfig) -> dict:
    """Entity id -> split, by random permutation; dev and test each get at least one entity
    when there are at least three subjects."""
    n = len(ids)
    n_test = int(round(cfg.test_fraction * n))
    n_dev = int(round(cfg.dev_fraction * n))
    if n >= 3:
        n_test = max(n_test, 1 if cfg.test_fraction > 0 else 0)
        n_dev = max(n_dev, 1 if cfg.dev_fraction > 0 else 0)
    order = rng.permutation(n)
    out = {}
    for rank, i in enumerate(order.tolist()):
        out[ids[i]] = "test" if rank < n_test else "dev" if rank < n_test + n_dev else "train"
    return out


def _generate(cfg: WorldConfig) -> dict:
    """Everything but the pictures, as plain data (entities, triples, visuals, question specs)."""
    rng = np.random.default_rng(cfg.seed)
    taken: set = set()
    ents: list[tuple[str, str, str]] = []
    etype: dict[str, str] = {}
    by_type: dict[str, list[str]] = {}

    def add(kind: str, n: int, tag: str | None = None):
        names = invent_names(n, rng, taken)
        start = len(by_type.get(kind, []))
        ids = [f"{TYPE_PREFIX[kind]}{start + i:04d}" for i in range(n)]
        for i, nm in zip(ids, names):
            ents.append((i, nm, TYPE_DESCRIPTION[kind]))
            etype[i] = tag or kind
        by_type.setdefault(kind, []).extend(ids)
        return ids

    places = add("place", cfg.n_places)
    foods = add("food", cfg.n_foods)
    materials = add("material", cfg.n_materials)
    clans = add("clan", cfg.n_clans)
    creatures = add("creature", cfg.n_creatures)
    distractors = add("creature", cfg.n_distractors, tag="distractor")
    all_creatures = creatures + distractors

    triples: list[tuple[str, str, str]] = []
    food_place = dict(zip(foods, [places[i] for i in _balanced(rng, len(foods), len(places))]))
    triples += [(f, "grows_in", p) for f, p in food_place.items()]
    triples += [(m, "found_in", places[i]) for m, i in zip(materials, _balanced(rng, len(materials), len(places)))]
    if len(places) > 1:
        seen = set()
        for i, p in enumerate(places):
            others = [j for j in range(len(places)) if j != i]
            for j in rng.choice(others, size=min(cfg.borders_per_place, len(others)), replace=False).tolist():
                pair = tuple(sorted((i, j)))
                if pair not in seen:  # one direction per pair: "borders" is symmetric
                    seen.add(pair)
                    triples.append((places[pair[0]], "borders", places[pair[1]]))
    foods_in = {p: [f for f in foods if food_place[f] == p] for p in places}

    habitat = dict(zip(all_creatures, [places[i] for i in _balanced(rng, len(all_creatures), len(places))]))
    clan = dict(zip(all_creatures, [clans[i] for i in _balanced(rng, len(all_creatures), len(clans))]))
    material = dict(zip(all_creatures, [materials[i] for i in _balanced(rng, len(all_creatures), len(materials))]))
    diet, prey = {}, {}
    for c in all_creatures:
        local = foods_in[habitat[c]]
        diet[c] = local[rng.integers(len(local))] if local and rng.random() < cfg.local_diet else foods[rng.integers(len(foods))]
        neighbours = [o for o in all_creatures if o != c and habitat[o] == habitat[c]]
        pool = neighbours if neighbours and rng.random() < cfg.local_prey else [o for o in all_creatures if o != c]
        prey[c] = pool[rng.integers(len(pool))]
    facts = {"lives_in": habitat, "eats": diet, "preys_on": prey, "belongs_to": clan, "made_of": material}
    for c in all_creatures:
        triples += [(c, r, facts[r][c]) for r in CREATURE_RELATIONS]
    facts["grows_in"] = food_place
    facts["found_in"] = {h: t for h, r, t in triples if r == "found_in"}

    visuals = _assign_visuals(rng, [e[0] for e in ents])

    candidates = {"place": places, "food": foods, "material": materials, "clan": clans,
                  "creature": all_creatures, "entity": [e[0] for e in ents]}

    # ---------------------------------------------------------------- questions
    split = _split_ids(rng, creatures, cfg)
    if cfg.object_questions:
        split.update(_split_ids(rng, foods, cfg))
        split.update(_split_ids(rng, materials, cfg))
    name = {e[0]: e[1] for e in ents}
    specs: list[dict] = []
    for c in creatures:
        for r in cfg.image_relations:
            cand, _, text = TEMPLATES[r]
            specs.append(dict(type="image", text=text, subject=c, relation=r, answer=facts[r][c], candidates=cand))
        for r in cfg.text_relations:
            cand, tmpl, _ = TEMPLATES[r]
            specs.append(dict(type="text", text=tmpl.format(name[c]), subject=c, relation=r, answer=facts[r][c],
                              candidates=cand))
    if cfg.object_questions:
        for r, subjects in (("grows_in", foods), ("found_in", materials)):
            cand, tmpl, _ = TEMPLATES[r]
            for s in subjects:
                specs.append(dict(type="text", text=tmpl.format(name[s]), subject=s, relation=r, answer=facts[r][s],
                                  candidates=cand))
    # analogies: example pairs come only from training creatures, so a dev/test creature's fact
    # never appears in any question's text; the example tail differs from the answer
    train_creatures = [c for c in creatures if split[c] == "train"]
    for c in creatures:
        if not train_creatures:
            break
        rels = rng.permutation(len(CREATURE_RELATIONS))[: cfg.analogies_per_creature].tolist()
        for ri in rels:
            r = CREATURE_RELATIONS[ri]
            a = facts[r][c]
            pool = [h for h in train_creatures if h != c and facts[r][h] != a and facts[r][h] != c]
            if not pool:
                continue
            h = pool[rng.integers(len(pool))]
            t = facts[r][h]
            specs.append(dict(type="analogy", text=f"{name[h]} is to {name[t]} as {name[c]} is to what?",
                              subject=c, relation=r, answer=a, candidates="entity", example=[h, t]))
    # a fixed shuffle, then ids in that order: question ids say nothing about type or answer
    order = rng.permutation(len(specs)).tolist()
    specs = [specs[i] for i in order]
    for i, s in enumerate(specs):
        s["id"] = f"q{i:05d}"
        s["split"] = split[s["subject"]]
    return dict(entities=ents, etype=etype, triples=triples, visuals=visuals, candidates=candidates,
                specs=specs, query_seed=int(rng.integers(2**63)))


def _write_tsv(path: Path, rows) -> None:
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows), encoding="utf-8")


def default_world_dir(config: WorldConfig) -> Path:
    from mrmkg.paths import cache_dir

    return cache_dir("worlds") / config.key()


def build_world(config: WorldConfig | None = None, out: str | Path | None = None, force: bool = False,
                progress: bool = False) -> World:
    """Generate the world into ``out`` (default: ``<cache>/worlds/<config key>``) and return it.

    An existing complete world with the same config is loaded instead (a second run costs
    nothing) unless ``force``. A folder holding a world of a *different* config is an error
    unless ``force`` (then it is replaced). The folder appears atomically: a crash leaves either
    the old world or none.
    """
    config = config or WorldConfig()
    root = Path(out) if out is not None else default_world_dir(config)
    root = root.absolute()
    if (root / "world.json").is_file() and not force:
        world = load_world(root)
        if world.config.to_dict() == config.to_dict():
            return world
        raise InputError("holds a world built with another config; pass force=True (--force) to replace it",
                         path=root / "world.json")
    if root.exists() and not force and any(root.iterdir()):
        raise InputError("exists and is not a demo world; choose an empty folder", path=root)

    data = _generate(config)
    types = data["etype"]
    with atomic_dir(root) as tmp:
        (tmp / "images").mkdir()
        (tmp / "queries").mkdir()
        (tmp / "tsv").mkdir()
        (tmp / "questions").mkdir()
        ents = data["entities"]
        it = ents
        if progress:
            from tqdm import tqdm

            it = tqdm(ents, desc="world: entity pictures", unit="img")
        for eid, _, _ in it:
            kind = "creature" if types[eid] == "distractor" else types[eid]
            img = render_entity_image(data["visuals"][eid], config.image_size, BACKGROUNDS[kind])
            (tmp / "images" / f"{eid}.png").write_bytes(png_bytes(img))
        qrng = np.random.default_rng(data["query_seed"])
        specs = data["specs"]
        it = [s for s in specs if s["type"] == "image"]
        if progress:
            it = tqdm(it, desc="world: question pictures", unit="img")
        for s in it:
            img = render_entity_image(data["visuals"][s["subject"]], config.image_size, BACKGROUNDS["creature"],
                                      rng=qrng, jitter=config.jitter)
            (tmp / "queries" / f"{s['id']}.png").write_bytes(png_bytes(img))

        rel_names = dict(RELATIONS)
        images = [(eid, str(root / "images" / f"{eid}.png")) for eid, _, _ in ents]
        kg = MMKG.from_records(ents, RELATIONS, data["triples"], images,
                               meta={"source": "mrmkg demo world", "world_key": config.key(), "seed": config.seed})
        kg.save(tmp / "graph")
        _write_tsv(tmp / "tsv" / "entities.tsv", ents)
        _write_tsv(tmp / "tsv" / "relations.tsv", RELATIONS)
        _write_tsv(tmp / "tsv" / "triples.tsv", data["triples"])
        _write_tsv(tmp / "tsv" / "images.tsv", [(eid, f"../images/{eid}.png") for eid, _, _ in ents])

        for sp in ("train", "dev", "test"):
            lines = []
            for s in specs:
                if s["split"] != sp:
                    continue
                q = Question(id=s["id"], type=s["type"], text=s["text"],
                             image=f"queries/{s['id']}.png" if s["type"] == "image" else None,
                             answer=s["answer"], candidates=s["candidates"], subject=s["subject"],
                             relation=s["relation"], split=sp, example=s.get("example"))
                lines.append(json.dumps(asdict(q), ensure_ascii=False))
            (tmp / "questions" / f"{sp}.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        atomic_write_json(tmp / "candidates.json", data["candidates"])
        atomic_write_json(tmp / "world.json", {
            "format": WORLD_FORMAT,
            "config": config.to_dict(),
            "relations": {rid: rel_names[rid] for rid, _ in RELATIONS},
            "entity_types": types,
            "visuals": data["visuals"],
        })
    return load_world(root)


def load_world(root: str | Path) -> World:
    """Load a world written by :func:`build_world` (question image paths become absolute)."""
    root = Path(root).absolute()
    meta_path = root / "world.json"
    if not meta_path.is_file():
        raise InputError("not a demo world folder (no world.json); make one with build_world()", path=root)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != WORLD_FORMAT:
        raise InputError(f"world format {meta.get('format')} is not {WORLD_FORMAT}; rebuild it", path=meta_path)
    config = WorldConfig.from_dict(meta["config"])
    questions = {}
    for sp in ("train", "dev", "test"):
        path = root / "questions" / f"{sp}.jsonl"
        qs = []
        for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                d = json.loads(line)
                q = Question(**d)
            except (json.JSONDecodeError, TypeError) as e:
                raise InputError(f"expected one question object per line ({e})", path=path, line=ln) from None
            if q.image is not None:
                q.image = str(root / q.image)
            qs.append(q)
        questions[sp] = qs
    candidates = json.loads((root / "candidates.json").read_text(encoding="utf-8"))
    return World(root=root, config=config, kg=MMKG.load(root / "graph"), questions=questions,
                 candidates=candidates, entity_types=meta["entity_types"], visuals=meta["visuals"])


# --------------------------------------------------------------------------- checks
def question_facts(q: Question) -> set:
    """Facts (head id, relation id, tail id) a question reveals when it is trained on: its
    answer fact and, for an analogy, its example pair."""
    out = {(q.subject, q.relation, q.answer)}
    if q.example:
        out.add((q.example[0], q.relation, q.example[1]))
    return out


def leaked_facts(world: World, heldout=("dev", "test")) -> set:
    """Facts of held-out subject entities that some training question reveals (empty = no
    leakage). A held-out subject's fact is any (subject, r, t) that a held-out question asks."""
    held_subjects = {q.subject for s in heldout for q in world.questions.get(s, [])}
    train_facts = set().union(*[question_facts(q) for q in world.questions.get("train", [])] or [set()])
    return {f for f in train_facts if f[0] in held_subjects}


def image_match_accuracy(world: World, encoder, split: str | None = None, ks=(1, 5)) -> dict:
    """How often the nearest graph image (cosine of ``encoder.encode`` features) to an image
    question's picture belongs to the question's subject: the ceiling that image retrieval
    puts on image questions. Returns ``{"n": count, "top1": ..., "top5": ...}``.

    ``split`` = None uses every split. Costs one encoder pass over the graph images and the
    question images.
    """
    qs = [q for q in (world.all_questions() if split is None else world.questions[split]) if q.type == "image"]
    if not qs:
        return {"n": 0, **{f"top{k}": float("nan") for k in ks}}
    g = np.asarray(encoder.encode(world.kg.image_paths), dtype=np.float32)
    q = np.asarray(encoder.encode([x.image for x in qs]), dtype=np.float32)
    owner = world.kg.image_entity[np.argsort(-(q @ g.T), axis=1)]  # [Q, I] entity of each ranked image
    truth = np.array([world.kg.entity_index(x.subject) for x in qs])[:, None]
    return {"n": len(qs), **{f"top{k}": float((owner[:, :k] == truth).any(1).mean()) for k in ks}}
