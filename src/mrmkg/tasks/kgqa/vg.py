"""Stage-1 pretraining data from Visual Genome files (paper §A.3, Figure 6; 18,448 instances there).

Per region-based QA pair the instance is: the image, the question (input) and the answer (target),
and a *modified scene graph* as its MMKG:

* every object of the scene graph is an entity (name = its first name), with the scene graph's
  relationships between objects as triples (relation = the predicate);
* every object's bounding-box crop is saved as a PNG and linked to the object by ``"image of"``;
* every attribute (e.g. "green") is an entity linked to its object by ``"attribute of"``.

Only *region-based* QA is used (QA pairs listed in ``qa_to_region_mapping.json``), as the paper
does: their scene graph holds the knowledge the answer needs. Free-form QA is skipped and counted.

Visual Genome files read (v1.2/v1.4 field names; the v1.0 spellings noted are accepted too)::

    scene_graphs.json     [{image_id, objects: [{object_id, x, y, w, h, names: [..] (or name),
                            attributes?: [..]}], relationships: [{relationship_id, predicate,
                            subject_id, object_id}]}]
    question_answers.json [{id (or image_id), qas: [{qa_id, image_id, question, answer}]}]
    qa_to_region_mapping.json  {qa_id: region_id}
    image_data.json       [{image_id (or id), url, width, height}]   -> image file = basename(url)
    attributes.json       optional: [{image_id, attributes: [{object_id, attributes: [..]}]}]
    region_graphs.json    only for graph_scope="region": [{image_id, regions: [{region_id,
                            objects: [...], relationships: [...]}]}]  (same object/relationship fields)

Images are looked up as ``<images_dir>/<basename of url>``, then under ``VG_100K/`` and
``VG_100K_2/`` (how the two image zips unpack), then ``<images_dir>/<image_id>.jpg``.

Design choice: all instances live in **one** MMKG whose ids are namespaced by image
(``vg:<image_id>:o<object_id>`` for objects, ``vg:<image_id>:a:<attribute>`` for attributes), so a
single index and a single ``KGFeatures`` table serve every instance; each instance's own MMKG is its
:class:`~mrmkg.kg.subgraph.Subgraph` over that graph (exactly its scene graph: all its triples, its
objects as seeds, their crops), and :meth:`VGStage1.instance_graph` returns it as a stand-alone
``MMKG`` (``MMKG.from_records``) when wanted.

Output folder (written atomically): ``graph/`` (the MMKG), ``crops/<image_id>/<object_id>.png``,
``records.jsonl`` (:class:`~mrmkg.tasks.kgqa.data.Stage1Record`), ``manifest.json`` (counts, config).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_dir, atomic_write_json, read_json
from mrmkg.kg.graph import MMKG
from mrmkg.kg.subgraph import Subgraph
from mrmkg.tasks.kgqa.data import PROMPT_TEMPLATE, Stage1Record, save_records, subgraph_to_mmkg
from mrmkg.yamlconfig import check_bounds

ATTRIBUTE_OF_ID = "vg:attribute_of"
ATTRIBUTE_OF = "attribute of"


@dataclass
class VGConfig:
    """How Visual Genome files become stage-1 instances."""

    graph_scope: str = field(default="image", metadata={
        "help": "image: the whole image's scene graph (paper Fig. 6); region: only the QA's region graph "
                "(needs region_graphs.json)"})
    prompt_template: str = field(default=PROMPT_TEMPLATE, metadata={"help": "model input; {question} is replaced"})
    min_crop_size: int = field(default=2, metadata={"ge": 0, "help": "objects whose clipped box is narrower/shorter (px) get no crop"})
    max_triples: int | None = field(default=None, metadata={
        "ge": 1, "help": "cap on triples per instance (relations first, then attributes); None = the whole scene graph"})
    images_per_entity: int = field(default=1, metadata={"ge": 0, "help": "crop nodes per object in the subgraph (0 = none)"})
    max_instances: int | None = field(default=None, metadata={"ge": 1, "help": "stop after this many instances (file order)"})
    skip_missing_images: bool = field(default=False, metadata={
        "help": "skip instances whose image file is missing (counted) instead of failing"})

    def __post_init__(self) -> None:
        if self.graph_scope not in ("image", "region"):
            raise InputError(f"field 'graph_scope': expected 'image' or 'region', not {self.graph_scope!r}")
        check_bounds(self)
        if "{question}" not in self.prompt_template:
            raise InputError("field 'prompt_template': must contain {question}")


@dataclass
class VGStage1:
    """The built data: one MMKG over all instances and one record per region-based QA pair."""

    kg: MMKG
    records: list[Stage1Record]
    counts: dict

    def instance_graph(self, i: int) -> MMKG:
        """Instance ``i``'s own MMKG (its scene graph with crops), via ``MMKG.from_records``."""
        return subgraph_to_mmkg(self.kg, self.records[i].subgraph)

    @classmethod
    def load(cls, directory: str | Path) -> "VGStage1":
        from mrmkg.tasks.kgqa.data import load_records

        d = Path(directory)
        man = d / "manifest.json"
        meta = read_json(man, "manifest", "a JSON object") if man.is_file() else {}
        if not isinstance(meta, dict):
            raise InputError(f"expected a JSON object, found {type(meta).__name__}", path=man)
        counts = meta.get("counts", {})
        return cls(MMKG.load(d / "graph"), load_records(d / "records.jsonl"), counts)


# ------------------------------------------------------------------------------ reading
def _load_json(path: Path, what: str):
    if not path.is_file():
        raise InputError(f"{what} not found (a Visual Genome file)", path=path)
    return read_json(path, what, f"{what} (JSON, UTF-8)")


def _list_of_dicts(data, path: Path, what: str) -> list[dict]:
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of {what}, got {type(data).__name__}", path=path)
    for i, d in enumerate(data):
        if not isinstance(d, dict):
            raise InputError(f"entry {i}: expected an object ({what}), got {type(d).__name__}", path=path)
    return data


def _image_id(d: dict, path: Path, i: int) -> int:
    v = d.get("image_id", d.get("id"))
    if not isinstance(v, int) or isinstance(v, bool):
        raise InputError(f"entry {i}: missing integer 'image_id' (or 'id')", path=path)
    return v


def _int(d: dict, key: str, path: Path, where: str) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise InputError(f"{where}: field '{key}': expected an integer, got {v!r}", path=path)
    return int(v)


def _name(obj: dict, path: Path, where: str) -> str:
    names = obj.get("names")
    if isinstance(names, list) and names and isinstance(names[0], str) and names[0].strip():
        return names[0].strip()
    if isinstance(obj.get("name"), str) and obj["name"].strip():
        return obj["name"].strip()
    raise InputError(f"{where}: expected 'names' (a non-empty list of strings) or 'name'", path=path)


def _parse_graph(g: dict, path: Path, where: str) -> tuple[dict[int, dict], list[tuple[int, str, int]]]:
    """objects (object_id -> {name, box, attributes}) and relationships (subject, predicate, object)."""
    objs_raw = g.get("objects", [])
    rels_raw = g.get("relationships", [])
    if not isinstance(objs_raw, list) or not isinstance(rels_raw, list):
        raise InputError(f"{where}: 'objects' and 'relationships' must be lists", path=path)
    objects: dict[int, dict] = {}
    for j, o in enumerate(objs_raw):
        w = f"{where}, object {j}"
        if not isinstance(o, dict):
            raise InputError(f"{w}: expected an object", path=path)
        oid = _int(o, "object_id", path, w)
        w = f"{where}, object_id {oid}"
        box = tuple(_int(o, k, path, w) for k in ("x", "y", "w", "h"))
        attrs = o.get("attributes") or []
        if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
            raise InputError(f"{w}: field 'attributes': expected a list of strings", path=path)
        if oid not in objects:
            objects[oid] = {"name": _name(o, path, w), "box": box, "attributes": list(attrs)}
    rels = []
    for j, r in enumerate(rels_raw):
        w = f"{where}, relationship {r.get('relationship_id', j) if isinstance(r, dict) else j}"
        if not isinstance(r, dict):
            raise InputError(f"{w}: expected an object", path=path)
        s, o = _int(r, "subject_id", path, w), _int(r, "object_id", path, w)
        pred = r.get("predicate")
        if not isinstance(pred, str):
            raise InputError(f"{w}: field 'predicate': expected a string, got {pred!r}", path=path)
        for role, oid in (("subject_id", s), ("object_id", o)):
            if oid not in objects:
                raise InputError(f"{w}: field '{role}' = {oid} is not an object of this graph", path=path)
        if pred.strip():
            rels.append((s, pred.strip().lower(), o))
    return objects, rels


def _find_image(images_dir: Path, meta: dict | None, image_id: int) -> Path:
    cands = []
    if meta and isinstance(meta.get("url"), str) and meta["url"]:
        base = meta["url"].rstrip("/").rsplit("/", 1)[-1]
        cands += [images_dir / base, images_dir / "VG_100K" / base, images_dir / "VG_100K_2" / base]
    cands.append(images_dir / f"{image_id}.jpg")
    for c in cands:
        if c.is_file():
            return c
    return cands[0]


# ------------------------------------------------------------------------------ building
def build_vg(vg_dir: str | Path, out_dir: str | Path, images_dir: str | Path | None = None,
             config: VGConfig = VGConfig()) -> VGStage1:
    """Build the stage-1 VG data into ``out_dir`` (see the module docstring); returns it.

    Raises:
        InputError: a missing/invalid VG file or field (naming the file, image_id and object or
            relationship id), a missing image file (unless ``skip_missing_images``), an unreadable image.
    """
    from mrmkg.encoders.images import load_image

    vg_dir = Path(vg_dir)
    images_dir = Path(images_dir) if images_dir is not None else vg_dir
    out_dir = Path(out_dir).resolve()
    p_sg, p_qa = vg_dir / "scene_graphs.json", vg_dir / "question_answers.json"
    p_map, p_img = vg_dir / "qa_to_region_mapping.json", vg_dir / "image_data.json"
    p_attr, p_reg = vg_dir / "attributes.json", vg_dir / "region_graphs.json"

    qa_map = _load_json(p_map, "qa_to_region_mapping.json")
    if not isinstance(qa_map, dict):
        raise InputError("expected an object mapping qa_id -> region_id", path=p_map)
    region_of = {}
    for k, v in qa_map.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(f"qa_id {k}: expected an integer region_id, got {v!r}", path=p_map)
        region_of[str(k)] = v

    counts = {"qa_pairs": 0, "skipped_not_region_based": 0, "skipped_no_scene_graph": 0,
              "skipped_missing_image": 0, "skipped_no_region_graph": 0, "objects": 0, "crops": 0,
              "skipped_small_crops": 0, "instances": 0}
    qas: list[tuple[int, str, str, str, int]] = []  # image_id, qa_id, question, answer, region_id
    for i, entry in enumerate(_list_of_dicts(_load_json(p_qa, "question_answers.json"), p_qa, "images with qas")):
        img = _image_id(entry, p_qa, i)
        for j, qa in enumerate(entry.get("qas") or []):
            w = f"image_id {img}, qa {j}"
            if not isinstance(qa, dict):
                raise InputError(f"{w}: expected an object", path=p_qa)
            qid = str(_int(qa, "qa_id", p_qa, w))
            for k in ("question", "answer"):
                if not isinstance(qa.get(k), str) or not qa[k].strip():
                    raise InputError(f"image_id {img}, qa_id {qid}: field '{k}': expected a non-empty string", path=p_qa)
            counts["qa_pairs"] += 1
            if qid not in region_of:
                counts["skipped_not_region_based"] += 1
                continue
            qas.append((int(qa.get("image_id", img)), qid, qa["question"].strip(), qa["answer"].strip(), region_of[qid]))
    needed = {q[0] for q in qas}

    graphs: dict[int, dict] = {}
    for i, g in enumerate(_list_of_dicts(_load_json(p_sg, "scene_graphs.json"), p_sg, "scene graphs")):
        img = _image_id(g, p_sg, i)
        if img in needed:
            graphs[img] = g
    extra_attrs: dict[tuple[int, int], list[str]] = {}
    if p_attr.is_file():
        for i, a in enumerate(_list_of_dicts(_load_json(p_attr, "attributes.json"), p_attr, "images with attributes")):
            img = _image_id(a, p_attr, i)
            if img not in needed:
                continue
            for o in a.get("attributes") or []:
                if isinstance(o, dict) and isinstance(o.get("attributes"), list):
                    oid = _int(o, "object_id", p_attr, f"image_id {img}")
                    extra_attrs.setdefault((img, oid), []).extend(x for x in o["attributes"] if isinstance(x, str))
    regions: dict[int, dict] = {}
    if config.graph_scope == "region":
        for i, rg in enumerate(_list_of_dicts(_load_json(p_reg, "region_graphs.json"), p_reg, "region graphs")):
            if _image_id(rg, p_reg, i) in needed:
                for r in rg.get("regions") or []:
                    if isinstance(r, dict) and isinstance(r.get("region_id"), int):
                        regions[r["region_id"]] = r
    img_meta = {}
    if p_img.is_file():
        for i, m in enumerate(_list_of_dicts(_load_json(p_img, "image_data.json"), p_img, "image records")):
            img_meta[_image_id(m, p_img, i)] = m

    ents: dict[str, tuple[str, str, str]] = {}
    rels: dict[str, tuple[str, str]] = {}
    triples: list[tuple[str, str, str]] = []
    triple_pos: dict[tuple[str, str, str], int] = {}
    images: list[tuple[str, str]] = []
    pending: list[tuple[int, str, str, str, str, list[int], list[str]]] = []
    cropped: set[str] = set()

    def add_triple(t) -> int:
        if t not in triple_pos:
            triple_pos[t] = len(triples)
            triples.append(t)
        return triple_pos[t]

    with atomic_dir(out_dir) as tmp:
        for img, qid, question, answer, region_id in qas:
            if config.max_instances is not None and len(pending) >= config.max_instances:
                break
            if img not in graphs:
                counts["skipped_no_scene_graph"] += 1
                continue
            if config.graph_scope == "region":
                if region_id not in regions:
                    counts["skipped_no_region_graph"] += 1
                    continue
                graph, src, where = regions[region_id], p_reg, f"image_id {img}, region_id {region_id}"
            else:
                graph, src, where = graphs[img], p_sg, f"image_id {img}"
            image_path = _find_image(images_dir, img_meta.get(img), img)
            if not image_path.is_file():
                if config.skip_missing_images:
                    counts["skipped_missing_image"] += 1
                    continue
                raise InputError(f"image of image_id {img} not found (set skip_missing_images to skip such "
                                 "instances)", path=image_path)
            objects, relations = _parse_graph(graph, src, where)
            photo = None
            rel_t, attr_t, obj_ids = [], [], []
            for oid, o in objects.items():
                eid = f"vg:{img}:o{oid}"
                obj_ids.append(eid)
                if eid not in ents:
                    ents[eid] = (eid, o["name"], "")
                    counts["objects"] += 1
                if eid not in cropped:
                    cropped.add(eid)
                    if photo is None:
                        photo = load_image(image_path)
                    x, y, w, h = o["box"]
                    x0, y0 = max(0, x), max(0, y)
                    x1, y1 = min(photo.width, x + w), min(photo.height, y + h)
                    if x1 - x0 < config.min_crop_size or y1 - y0 < config.min_crop_size:
                        counts["skipped_small_crops"] += 1
                    else:
                        rel_path = Path("crops") / str(img) / f"{oid}.png"
                        (tmp / rel_path).parent.mkdir(parents=True, exist_ok=True)
                        photo.crop((x0, y0, x1, y1)).save(tmp / rel_path)
                        images.append((eid, str(out_dir / rel_path)))
                        counts["crops"] += 1
                for a in dict.fromkeys(x.strip().lower() for x in o["attributes"] + extra_attrs.get((img, oid), [])
                                       if x.strip()):
                    aid = f"vg:{img}:a:{a}"
                    ents.setdefault(aid, (aid, a, ""))
                    rels.setdefault(ATTRIBUTE_OF_ID, (ATTRIBUTE_OF_ID, ATTRIBUTE_OF))
                    attr_t.append(add_triple((aid, ATTRIBUTE_OF_ID, eid)))
            for s, pred, o in relations:
                rid = f"vg:rel:{pred}"
                rels.setdefault(rid, (rid, pred))
                rel_t.append(add_triple((f"vg:{img}:o{s}", rid, f"vg:{img}:o{o}")))
            tids = list(dict.fromkeys(rel_t + attr_t))
            if config.max_triples is not None:
                tids = tids[: config.max_triples]
            pending.append((img, qid, question, answer, str(image_path.resolve()), tids, obj_ids))

        kg = MMKG.from_records(list(ents.values()), list(rels.values()), triples, images,
                               meta={"source": "visual_genome", "graph_scope": config.graph_scope})
        records = []
        for img, qid, question, answer, image_path, tids, obj_ids in pending:
            seeds = [kg.entity_index(e) for e in obj_ids]
            sg = Subgraph.from_triples(kg, np.array(tids, np.int64), np.zeros(len(tids), np.float32), seeds=seeds,
                                       query=question, images_per_entity=config.images_per_entity)
            records.append(Stage1Record(id=f"vg:{qid}", question=question,
                                        prompt=config.prompt_template.format(question=question), target=answer,
                                        subgraph=sg, image=image_path,
                                        meta={"image_id": img, "qa_id": int(qid), "region_id": region_of[qid]}))
        counts["instances"] = len(records)
        kg.save(tmp / "graph")
        save_records(records, tmp / "records.jsonl")
        atomic_write_json(tmp / "manifest.json", {"counts": counts, "config": asdict(config),
                                                  "source": str(vg_dir.resolve()), "graph": kg.stats()})
    return VGStage1(kg, records, counts)
