"""`mrmkg stage1 ...`: build stage-1 (pretraining) instances from Visual Genome or from any graph.

Both write a folder (``-o DIR``) whose instances are ``DIR/records.jsonl`` (:data:`RECORDS_FILE`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from mrmkg.commands.options import Graph, Out, check_out_dir

app = typer.Typer(help="Stage-1 pretraining data: Visual Genome scene graphs (paper A.3) or QA from any MMKG.",
                  no_args_is_help=True)

#: the records file inside the output folder of both commands (what `task: stage1` reads)
RECORDS_FILE = "records.jsonl"


@app.command()
def vg(vg_dir: Annotated[Path, typer.Argument(help="folder with scene_graphs.json, question_answers.json, "
                                                   "qa_to_region_mapping.json, image_data.json (+ attributes.json)")],
       out: Out,
       images: Annotated[Optional[Path], typer.Option(help="folder of VG images (VG_100K/, VG_100K_2/); "
                                                           "default VG_DIR")] = None,
       scope: Annotated[Literal["image", "region"], typer.Option(help="scene graph of the whole image, or "
                                                                      "the QA's region graph")] = "image",
       max_instances: Annotated[Optional[int], typer.Option(min=1, help="stop after this many instances")] = None,
       max_triples: Annotated[Optional[int], typer.Option(min=1, help="cap on triples per instance")] = None,
       skip_missing_images: Annotated[bool, typer.Option("--skip-missing-images",
                                                         help="skip instances whose image is missing")] = False) -> None:
    """Region-based VG QA -> instances whose MMKG is the image's scene graph with object crops.

    Writes OUT (replaced atomically): graph/, crops/, records.jsonl, manifest.json."""
    from mrmkg.tasks.kgqa.vg import VGConfig, build_vg

    check_out_dir(out, marker=RECORDS_FILE, what="a stage-1 data folder")
    d = build_vg(vg_dir, out, images_dir=images, config=VGConfig(
        graph_scope=scope, max_instances=max_instances, max_triples=max_triples,
        skip_missing_images=skip_missing_images))
    for k, v in d.counts.items():
        print(f"{k}: {v}")
    print(f"wrote {out} (graph: {d.kg.num_entities} entities, {d.kg.num_triples} triples, {d.kg.num_images} crops)")


@app.command("kg-qa")
def kg_qa(graph: Graph,
          out: Out,
          max_answers: Annotated[int, typer.Option(min=1, help="skip (entity, relation) pairs with more answers")] = 3,
          max_triples: Annotated[int, typer.Option(min=1, help="triples per neighbourhood subgraph")] = 10,
          image_questions: Annotated[bool, typer.Option("--image-questions/--no-image-questions",
                                                        help="also ask 'What is shown in this image?' of entity "
                                                             "images")] = True,
          max_instances: Annotated[Optional[int], typer.Option(min=1, help="sample this many (seeded)")] = None,
          seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="sampling seed")] = 0) -> None:
    """'What is the <relation> of <entity>?' and 'What is shown in this image?' instances from a graph.

    Writes OUT (replaced atomically): records.jsonl, which `task: stage1` with `source: records` reads."""
    from mrmkg.fileio import atomic_dir
    from mrmkg.kg.graph import MMKG
    from mrmkg.tasks.kgqa.data import KGQAConfig, build_kg_qa, save_records

    check_out_dir(out, marker=RECORDS_FILE, what="a stage-1 data folder")
    kg = MMKG.load(graph)
    recs, counts = build_kg_qa(kg, KGQAConfig(max_answers=max_answers, max_triples=max_triples,
                                              image_questions=image_questions, max_instances=max_instances,
                                              seed=seed))
    with atomic_dir(out) as tmp:
        save_records(recs, tmp / RECORDS_FILE)
    for k, v in counts.items():
        print(f"{k}: {v}")
    print(f"wrote {len(recs)} records to {out / RECORDS_FILE}")
