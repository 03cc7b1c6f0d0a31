"""MMKB / MKGformer folders: FB15K (the paper's graph, MR-MKG §4) and WN18 with one image folder per entity.

The layouts users have, and the file names read (the first one present of each row)::

    triples     *_EntityTriples.txt                          MMKB (mniepert/mmkb): FB15K, DB15K, YAGO15K
                train.tsv [dev.tsv test.tsv]                 MKGformer FB15k-237-IMG / WN18-IMG (KG-BERT layout)
                freebase_mtr100_mte100-train.txt [-valid -test]   the original FB15K release
                train.txt [valid.txt test.txt], triples.txt  other FB15K/WN18 copies
    names       entity2text.txt                              id<TAB>name (MKGformer / KG-BERT)
                FB15k_mid2name.txt, mid2name.txt             id<TAB>Wikipedia_Title ("_" read as spaces)
    descriptions entity2textlong.txt, FB15k_mid2description.txt, mid2description.txt   (optional)
    relations   relation2text.txt                            id<TAB>name (optional)
    images      images/, image-graph_images/ (MMKB's download-images.py), FB15k-images/, FB15K-images/,
                wn18-images/, WN18-images/                   one sub-folder per entity, any image files in it

A triple line is ``<s> <p> <o> .`` (N-Triples-like: whitespace-separated, ``<...>`` optional, the final
``.`` optional) or ``head<TAB>relation<TAB>tail``. Freebase ids are written three ways across these
releases (``/m/0abc`` in the triple files, ``m.0abc`` in MMKB's image lists and folder names,
``<http://rdf.freebase.com/ns/m.0abc>`` in RDF dumps); all are read as ``/m/0abc``. An image folder is
matched to the entity of its own name, its Freebase form (``m.0abc`` -> ``/m/0abc``) or its WordNet
form (``n03964744`` -> ``03964744``, MKGformer's WN18-IMG).

Entities and relations are those of the triples, in order of first appearance; names come from the
names file (an id missing from it is named by itself), relation names from ``relation2text.txt`` or
else from the id (``/film/film/genre`` -> ``film film genre``, as KG-BERT writes them). The image sets
cover all of FB15K, so with a subset (FB15k-237) some folders name no entity of the graph: they are
skipped and counted (``skipped_images_unknown_id``), as are names of entities in no triple
(``unused_names``).
"""
from __future__ import annotations

import re
from pathlib import Path

from mrmkg.errors import InputError
from mrmkg.kg.io import LoadOptions, _GraphBuilder, _list_image_folder, _options, _read_id_values, _read_lines

SPLITS = (("train.tsv", "dev.tsv", "test.tsv"),
          ("freebase_mtr100_mte100-train.txt", "freebase_mtr100_mte100-valid.txt", "freebase_mtr100_mte100-test.txt"),
          ("train.txt", "valid.txt", "test.txt"), ("triples.txt",))
NAME_FILES = ("entity2text.txt", "FB15k_mid2name.txt", "mid2name.txt")
DESCRIPTION_FILES = ("entity2textlong.txt", "FB15k_mid2description.txt", "mid2description.txt")
RELATION_FILES = ("relation2text.txt",)
IMAGE_DIRS = ("images", "image-graph_images", "FB15k-images", "FB15K-images", "wn18-images", "WN18-images")
#: files that only these layouts hold, together (for ``--format auto``)
DETECT = (("*_EntityTriples.txt",), ("freebase_mtr100_mte100-train.txt",), ("train.tsv", "entity2text.txt"))

_FB_NS = ("http://rdf.freebase.com/ns/", "https://rdf.freebase.com/ns/")
_DOTTED_MID = re.compile(r"^([mg])\.([0-9a-z_]+)$")
_WN_FOLDER = re.compile(r"^n(\d+)$")
_EXPECTED = "<subject> <predicate> <object> . or head<TAB>relation<TAB>tail"


def looks_like_mmkb(folder: Path) -> bool:
    return any(all(any(folder.glob(pattern)) for pattern in group) for group in DETECT)


def canonical_id(x: str) -> str:
    """``m.0abc`` and ``<http://rdf.freebase.com/ns/m.0abc>`` -> ``/m/0abc``; Freebase RDF predicates
    ``ns/film.film.genre`` -> ``/film/film/genre``; any other id unchanged."""
    from_ns = False
    for ns in _FB_NS:
        if x.startswith(ns):
            x, from_ns = x[len(ns):], True
    m = _DOTTED_MID.match(x)
    if m:
        return f"/{m.group(1)}/{m.group(2)}"
    return "/" + x.replace(".", "/") if from_ns else x


def folder_entity(name: str, known) -> str | None:
    """The entity an image folder ``name`` belongs to, or ``None``."""
    for cand in (name, canonical_id(name), *(m.group(1) for m in [_WN_FOLDER.match(name)] if m)):
        if cand in known:
            return cand
    return None


def readable(x: str) -> str:
    """A name from an id: an IRI's local name, or a Freebase path's words (``/film/film/genre`` ->
    ``film film genre``)."""
    if "://" in x:
        from mrmkg.kg.formats.rdf import local_name

        return local_name(x)
    return re.sub(r"[/_.]+", " ", x).strip() or x


def split_statement(s: str, path, lineno: int) -> list[str]:
    """``<s> <p> <o> .`` or ``s<TAB>p<TAB>o`` -> three canonical ids."""
    cols = [c.strip() for c in s.split("\t")] if "\t" in s else s.split()
    if cols and cols[-1] == ".":
        cols = cols[:-1]
    elif cols and cols[-1].endswith(">."):
        cols[-1] = cols[-1][:-1]
    if len(cols) != 3:
        raise InputError(f"found {len(cols)} field(s), expected 3 ({_EXPECTED})", path=path, line=lineno)
    out = []
    for c in cols:
        if c.startswith("<") and c.endswith(">"):
            c = c[1:-1].strip()
        if not c or c.startswith('"'):
            raise InputError(f"empty id or a literal {c!r} (expected {_EXPECTED} with entity ids)",
                             path=path, line=lineno)
        out.append(canonical_id(c))
    return out


def _first(folder: Path, names) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def triple_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*_EntityTriples.txt"))
    if files:
        return files
    for split in SPLITS:
        if (folder / split[0]).is_file():
            return [folder / n for n in split if (folder / n).is_file()]
    raise InputError("no triple file found (expected *_EntityTriples.txt, train.tsv, "
                     "freebase_mtr100_mte100-train.txt, train.txt or triples.txt)", path=folder)


def _clean_description(text: str) -> str:
    """``"Some text."@en`` (FB15k_mid2description.txt) -> ``Some text.``"""
    m = re.match(r'^"(.*)"(@[\w-]+)?$', text)
    return (m.group(1) if m else text).replace("\\n", " ").strip()


def load_mmkb(folder: str | Path, images_dir: str | Path | None = None, options: LoadOptions | None = None,
              **kw):
    """Load an MMKB / MKGformer folder (files in the module docstring). ``images_dir`` overrides the
    folder's image folder. Keywords are :class:`LoadOptions` fields."""
    opt = _options(options, kw)
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder (expected an MMKB/MKGformer folder with triples, names and images)", path=folder)
    b = _GraphBuilder(opt, "mmkb", str(folder.resolve()))
    b.entities_from, b.relations_from = "any triple", "any triple"
    for f in triple_files(folder):
        lines, heads, rels, tails = [], [], [], []
        for lineno, s in _read_lines(f, _EXPECTED):
            h, r, t = split_statement(s, f, lineno)
            lines.append(lineno)
            heads.append(h)
            rels.append(r)
            tails.append(t)
        b.add_triples(f, lines, heads, rels, tails)

    names_file = _first(folder, NAME_FILES)
    names = {} if names_file is None else _read_id_values(names_file, "entity id<TAB>name", canonical_id)
    underscores = names_file is not None and names_file.name != "entity2text.txt"  # Wikipedia titles
    rel_file = _first(folder, RELATION_FILES)
    rel_names = {} if rel_file is None else _read_id_values(rel_file, "relation id<TAB>name", canonical_id)

    def entity_name(e: str) -> str:
        if e not in names:
            return readable(e) if "://" in e else e
        name = names[e][0]
        return name.replace("_", " ").strip() if underscores else name

    b.define_from_triples(entity_name, lambda r: rel_names[r][0] if r in rel_names else readable(r))
    b.report["unused_names"] = sum(1 for e in names if e not in b.eidx)
    b.report["unnamed_entities"] = sum(1 for e in b.ent_ids if e not in names)
    desc_file = _first(folder, DESCRIPTION_FILES)
    if desc_file is not None:
        for e, (text, _) in _read_id_values(desc_file, "entity id<TAB>description", canonical_id).items():
            if e in b.eidx:
                b.ent_desc[b.eidx[e]] = _clean_description(text)

    img_root = Path(images_dir) if images_dir is not None else next(
        (folder / d for d in IMAGE_DIRS if (folder / d).is_dir()), None)
    if images_dir is not None and not img_root.is_dir():
        raise InputError("image folder not found (expected <entity id>/<image file> sub-folders)", path=img_root)
    if img_root is not None:
        add_image_folder(b, img_root)
    return b.build()


def add_image_folder(b: _GraphBuilder, img_root: Path) -> None:
    """Images from ``img_root/<entity folder>/<file>``; folders naming no entity are skipped and counted."""
    for name, f in _list_image_folder(img_root):
        eid = folder_entity(name, b.eidx)
        if eid is None:
            b.report["skipped_images_unknown_id"] += 1
            continue
        b.add_image(eid, f, img_root / name, None, img_root)
    b.report["images_dir"] = str(img_root.resolve())
