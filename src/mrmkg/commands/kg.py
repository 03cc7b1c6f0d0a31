"""`mrmkg kg ...`: build, inspect and query a multimodal knowledge graph.

* ``mrmkg kg build SRC --format markg|tsv|jsonl|nt|ttl|mmkb|openke|pykeen -o DIR`` loads and validates a
  graph (:mod:`mrmkg.kg.io`, :mod:`mrmkg.kg.formats`), saves it and builds its index (:class:`mrmkg.kg.index.KGIndex`) into DIR.
  The whole folder is built under a temporary name and renamed at the end, so a failure
  (bad input: exit status 2) never leaves a half-written DIR. Embeddings go through the on-disk
  cache, so a second build of the same graph with the same encoders re-encodes nothing and says so.
* ``mrmkg kg stats GRAPH`` prints the graph's statistics, what loading did (duplicates dropped,
  records skipped) and the index's encoders (``--json`` for one machine-readable object).
* ``mrmkg kg retrieve GRAPH "question" [--image PATH]`` prints the retrieved subgraph's triples,
  best first (``--json`` for one machine-readable object).

Heavy imports (torch, FAISS, encoders) happen inside the commands, so ``mrmkg --help`` stays fast.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from mrmkg.commands.options import Graph, Json, Out, Quiet, check_out_dir
from mrmkg.errors import InputError

app = typer.Typer(help="Build, inspect and query a multimodal knowledge graph.", no_args_is_help=True)


class _CountingEncoder:
    """Forwards to an encoder and counts the items it really had to encode.

    ``cached_encode`` calls ``encode`` only on a cache miss, so ``encoded == 0`` after a build
    means every embedding was served from the cache (the encoder's ``name``/``dim`` are kept, so
    cache keys are unchanged).
    """

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.encoded = inner, inner.name, inner.dim, 0

    def encode(self, items, *args, **kwargs):
        self.encoded += len(items)
        return self.inner.encode(items, *args, **kwargs)

    def __getattr__(self, attr):  # num_tokens, encode_tokens, ...
        return getattr(self.inner, attr)


def _console():
    """Plain console: no markup (entity names may contain "[...]"), wide enough not to wrap ids
    when the output goes to a file or pipe."""
    import sys

    from rich.console import Console

    return Console(markup=False, highlight=False, width=None if sys.stdout.isatty() else 160)


@app.command()
def build(
    src: Annotated[Path, typer.Argument(help="graph source: a MarKG, MMKB/MKGformer or OpenKE folder, a TSV or "
                                             "PyKEEN triple file or folder, or a .jsonl, .nt or .ttl file")],
    out: Out,
    format: Annotated[Literal["auto", "markg", "tsv", "jsonl", "nt", "ttl", "mmkb", "openke", "pykeen"], typer.Option(
        "--format", "-f", help="input format; 'auto' = nt/ttl/jsonl by file suffix; for a folder markg with "
                               "wiki_tuple_ids.txt, openke with entity2id.txt and train2id.txt, mmkb with "
                               "*_EntityTriples.txt, freebase_mtr100_mte100-train.txt or train.tsv with entity2text.txt; else tsv "
                               "(pykeen only when asked for)")] = "auto",
    images: Annotated[Optional[Path], typer.Option(
        "--images", help="markg/mmkb/openke: folder of <entity id>/<image file> sub-folders (default: SRC/images "
                         "if present; mmkb also finds image-graph_images, FB15k-images, wn18-images)")] = None,
    entities: Annotated[Optional[Path], typer.Option(
        "--entities", help="tsv: entity file id<TAB>name[<TAB>description] (default: entities.tsv in a SRC folder)")] = None,
    relations: Annotated[Optional[Path], typer.Option(
        "--relations", help="tsv: relation file id<TAB>name (default: relations.tsv in a SRC folder)")] = None,
    image_list: Annotated[Optional[Path], typer.Option(
        "--image-list", help="tsv/nt/ttl/openke/pykeen: entity id<TAB>image path lines, paths relative to the "
                             "list's folder (tsv default: images.tsv in a SRC folder)")] = None,
    order: Annotated[Literal["hrt", "htr"], typer.Option(
        "--order", help="tsv/pykeen: column order of the triple files, head-relation-tail or head-tail-relation")] = "hrt",
    text_encoder: Annotated[str, typer.Option(
        "--text-encoder", help="text encoder for triples, entities and relations: 'minilm' or 'clip:<id or folder>'")] = "minilm",
    vision_encoder: Annotated[str, typer.Option(
        "--vision-encoder", help="vision encoder for entity images: 'efficientnet-lite0', 'clip:<id or folder>' "
                                 "or 'none' (ignore images)")] = "efficientnet-lite0",
    image_standin: Annotated[Literal["none", "description"], typer.Option(
        "--image-standin", help="'description': for a graph whose images are not obtainable, give every entity one "
                                "stand-in image node embedded from its description by the text encoder (replaces "
                                "any real images), so the alignment loss has image nodes; 'none': real images only")] = "none",
    entity_text: Annotated[Literal["name", "name+description"], typer.Option(
        "--entity-text", help="text embedded for each entity node")] = "name",
    unknown_ids: Annotated[Literal["error", "skip", "add"], typer.Option(
        "--unknown-ids", help="ids used in triples/images but not defined: stop, skip the record, "
                              "or add it named by its id (skips and additions are counted)")] = "error",
    duplicate_triples: Annotated[Literal["drop", "keep", "error"], typer.Option(
        "--duplicate-triples", help="repeated triple lines: keep the first (counted), keep all, or stop")] = "drop",
    bad_images: Annotated[Literal["error", "skip"], typer.Option(
        "--bad-images", help="missing, truncated or non-image files: stop, or skip them (counted)")] = "error",
    check_images: Annotated[bool, typer.Option(
        "--check-images/--no-check-images", help="decode every image while loading, so a bad file is reported "
                                                 "with its list file and line before any encoding starts")] = True,
    allow_outside_paths: Annotated[bool, typer.Option(
        "--allow-outside-paths", help="accept image paths that lead outside their data folder (absolute paths, "
                                      "'..', symlinks pointing elsewhere); refused by default")] = False,
    images_per_entity: Annotated[int, typer.Option(
        "--images-per-entity", min=0, help="keep at most N images of each entity, the first in file/folder "
                                           "order (0 = all; MMKB has up to 25 per search engine)")] = 0,
    exact_max: Annotated[int, typer.Option(
        "--exact-max", min=1, help="index exactly (flat) up to this many vectors, approximately above (HNSW up to 2M vectors, IVF beyond)")] = 20_000,
    quiet: Quiet = False,
) -> None:
    """Load and validate a graph, then save it with its embedding index into OUT.

    Writes OUT (replaced atomically): graph.json, graph.npz, index/ (manifest, FAISS indexes, embeddings).
    A non-empty OUT that is not a built graph is refused."""
    from mrmkg.encoders.registry import get_text_encoder, get_vision_encoder
    from mrmkg.fileio import atomic_dir
    from mrmkg.kg.index import IndexConfig, KGIndex
    from mrmkg.kg.io import LoadOptions, load_graph

    t0 = time.perf_counter()
    check_out_dir(out, marker="graph.json", what="a built graph")
    vision = None if vision_encoder.strip().lower() == "none" else vision_encoder
    options = LoadOptions(unknown_ids=unknown_ids, duplicate_triples=duplicate_triples, bad_images=bad_images,
                          check_images=check_images, allow_outside_paths=allow_outside_paths,
                          images_per_entity=images_per_entity)
    kg = load_graph(src, format, options, images_dir=images, entities=entities, relations=relations,
                    images=image_list, order=order)
    if image_standin != "none":
        kg = kg.with_image_standins(image_standin)
    t_load = time.perf_counter() - t0
    config = IndexConfig(text_encoder=text_encoder, vision_encoder=vision, entity_text=entity_text,
                         exact_max=exact_max)
    text_enc = _CountingEncoder(get_text_encoder(text_encoder))
    vis_enc = _CountingEncoder(get_vision_encoder(vision)) if (vision and kg.num_images and not kg.image_standin) else None
    with atomic_dir(out) as tmp:
        kg.save(tmp)
        index = KGIndex.build(kg, config, tmp, text_encoder=text_enc, vision_encoder=vis_enc, progress=not quiet)
    elapsed = time.perf_counter() - t0

    image_nodes = f"{kg.num_images} {'image stand-ins (' + kg.image_standin + ')' if kg.image_standin else 'images'}"
    if quiet:
        typer.echo(f"wrote {out}: {kg.num_entities} entities, {kg.num_triples} triples, {image_nodes} in {elapsed:.1f} s")
        return
    con = _console()
    rep = kg.meta["load"]
    con.print(f"loaded {kg.num_entities} entities, {kg.num_relations - 1} relations, {kg.num_triples} triples, "
              f"{image_nodes} from {src} ({rep['format']}) in {t_load:.2f} s")
    for line in _report_lines(rep):
        con.print(f"  {line}")
    if kg.meta.get("real_images_replaced"):
        con.print(f"  replaced {kg.meta['real_images_replaced']} real image(s) by the stand-ins")
    n_items = index.num_triples + int(index.entity_emb.shape[0]) + int(index.relation_emb.shape[0])
    encoded = text_enc.encoded + (vis_enc.encoded if vis_enc is not None else 0)
    total = n_items + index.num_images
    if encoded == 0:
        con.print(f"embeddings: all {total} served from the embedding cache (nothing re-encoded)")
    else:
        con.print(f"embeddings: encoded {encoded} of {total} ({text_enc.encoded} texts with {text_enc.name}"
                  + (f", {vis_enc.encoded} images with {vis_enc.name}" if vis_enc is not None else "")
                  + "); cached for the next build")
    con.print(f"index: {index.manifest.get('triple_index')} over {index.num_triples} triples "
              f"(d={index.text_dim}), {index.num_images} images")
    con.print(f"wrote {out} in {elapsed:.1f} s")


def _report_lines(rep: dict) -> list[str]:
    """Human-readable lines for what a loader did (only the non-zero counts)."""
    out = []
    if rep.get("duplicate_triples"):
        out.append(f"dropped {rep['duplicate_triples']} duplicate triple line(s) (kept the first of each)")
    labels = {"skipped_triples_unknown_id": "skipped {} triple(s) with unknown ids",
              "skipped_images_unknown_id": "skipped {} image(s) of unknown entities",
              "skipped_descriptions_unknown_id": "skipped {} description(s) of unknown entities",
              "added_entities": "added {} undefined entity id(s), named by their id",
              "added_relations": "added {} undefined relation id(s), named by their id",
              "skipped_bad_images": "skipped {} missing/unreadable image file(s)",
              "skipped_images_over_cap": "skipped {} image(s) past --images-per-entity",
              "skipped_literal_triples": "skipped {} statement(s) with a literal object (attributes, not edges)",
              "skipped_blank_node_triples": "skipped {} statement(s) with a blank node",
              "skipped_remote_images": "skipped {} http(s) image(s) (images are read from disk)",
              "unused_names": "ignored {} name(s) of ids in no triple",
              "self_loops": "kept {} self-loop triple(s) (head == tail)"}
    for key, text in labels.items():
        if rep.get(key):
            out.append(text.format(rep[key]))
    return out


@app.command()
def stats(graph: Graph, as_json: Json = False) -> None:
    """Print statistics of a built graph: sizes, degrees, load report and index."""
    from mrmkg.fileio import read_json
    from mrmkg.kg.graph import MMKG

    kg = MMKG.load(graph)
    s = kg.stats()
    rep = kg.meta.get("load", {})
    manifest_path = graph / "index" / "manifest.json"
    manifest = read_json(manifest_path, "index manifest", "a JSON object") if manifest_path.is_file() else None
    if manifest is not None and not isinstance(manifest, dict):
        raise InputError(f"expected a JSON object, found {type(manifest).__name__}; rebuild the index "
                         "(`mrmkg kg index`)", path=manifest_path)
    if as_json:
        index = None if manifest is None else {k: manifest.get(k) for k in (
            "text_encoder", "text_encoder_id", "text_dim", "vision_encoder", "vision_encoder_id", "image_dim",
            "counts", "triple_index", "image_index")}
        typer.echo(json.dumps({"graph": s, "load": rep, "index": index}, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(title=f"graph {graph}", show_header=True)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for k, v in s.items():
        table.add_row(k.replace("_", " "), f"{v:.2f}" if isinstance(v, float) else f"{v:,}")
    if rep:
        table.add_section()
        table.add_row("source", f"{rep.get('source', '')} ({rep.get('format', '')})")
        for path, n in rep.get("lines", {}).items():
            table.add_row("triple lines read", f"{n:,}  ({Path(path).name})")
        for line in _report_lines(rep):
            table.add_row("load", line)
    if manifest is not None:
        table.add_section()
        table.add_row("text encoder", f"{manifest.get('text_encoder_id')} (d={manifest.get('text_dim')})")
        vid = manifest.get("vision_encoder_id")
        table.add_row("vision encoder", f"{vid} (d={manifest.get('image_dim')})" if vid else "none")
        table.add_row("triple index", str(manifest.get("triple_index")))
    else:
        table.add_row("index", "none (build one with `mrmkg kg build`)")
    _console().print(table)


@app.command()
def retrieve(
    graph: Graph,
    question: Annotated[Optional[str], typer.Argument(help="the question text (may be omitted with --image)")] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="an image to query with (alone or with the text)")] = None,
    n: Annotated[int, typer.Option("-n", min=1, help="first stage: triples nearest to the query whose entities seed the subgraph")] = 10,
    N: Annotated[int, typer.Option("-N", min=1, help="triples kept after expanding the seeds and re-ranking (paper: 10 or 20)")] = 10,
    hops: Annotated[int, typer.Option("--hops", min=0, help="expansion hops from the seed entities (paper: 1)")] = 1,
    min_score: Annotated[Optional[float], typer.Option(
        "--min-score", min=-1.0, max=1.0, help="drop triples whose cosine to the query is below this")] = None,
    as_json: Json = False,
) -> None:
    """Retrieve the subgraph for a question (and/or image) and print its triples, best first
    (``--json``: one object with the query, seeds, nodes and triples)."""
    if question is not None:
        try:
            question.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 reach Python as lone surrogates
            raise InputError(f"the question is not valid UTF-8 text: {question.encode('utf-8', 'replace')!r}") from None
    text = question if (question is not None and question.strip()) else None
    if text is None and image is None:
        raise InputError('empty query: give a question (e.g. "what is the capital of France") or --image PATH')
    if image is not None:
        from mrmkg.encoders.images import load_image

        load_image(image)  # fail on a bad file before loading any model
    from mrmkg.kg.retrieve import RetrievalConfig, Retriever, open_graph

    kg, index = open_graph(graph)
    config = RetrievalConfig(n=n, N=N, hops=hops, min_score=min_score)
    sub = Retriever(kg, index, config).retrieve(text=text, image=str(image) if image is not None else None)
    if sub.triple_ids.size == 0:
        why = f" with a cosine of at least {min_score}" if min_score is not None else ""
        raise InputError(f"the query matched no triple{why}: {sub.query!r} (try other words"
                         + (", a lower --min-score" if min_score is not None else "") + ")")
    if as_json:
        typer.echo(json.dumps(sub.to_dict(kg), ensure_ascii=False))
        return
    from rich.table import Table

    rows = sub.triples_table(kg)
    table = Table(title=f"{len(rows)} triples for {sub.query!r} ({sub.seeds.size} seed entities, {sub.num_nodes} nodes)")
    for col, kw in (("#", {"justify": "right"}), ("id", {"justify": "right"}), ("head", {}), ("relation", {}),
                    ("tail", {}), ("score", {"justify": "right"})):
        table.add_column(col, **kw)
    for i, r in enumerate(rows, 1):
        table.add_row(str(i), str(r["id"]), f"{r['head_name']} ({r['head']})",
                      f"{r['relation_name']} ({r['relation']})", f"{r['tail_name']} ({r['tail']})", f"{r['score']:.4f}")
    _console().print(table)
