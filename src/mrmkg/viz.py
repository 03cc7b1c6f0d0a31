"""Pictures of retrieved subgraphs: what the model was shown, drawn so a person can check it.

:func:`render_subgraph` draws a :class:`~mrmkg.kg.subgraph.Subgraph` with matplotlib and a
networkx layout: entity nodes as labelled boxes (seed entities, where retrieval started, with a
thick border), image nodes as thumbnails of the image file, and every edge labelled with its
relation name and retrieval score (the cosine of the triple to the query); ``image of`` edges
are dotted and unlabelled (a legend says so). The figure is built on a bare :class:`matplotlib.figure.Figure` with the Agg
canvas (no pyplot global state, safe in threads and servers) and written atomically.
"""
from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_write_bytes
from mrmkg.kg.subgraph import ENTITY, MEMORY, Subgraph

FORMATS = {".png": "png", ".svg": "svg"}
THUMB_PX = 48  # thumbnails are resized to this many pixels on their long side before drawing


def _thumbnail(path: str, px: int = THUMB_PX) -> np.ndarray | None:
    """The image as an RGB array no larger than ``px``, or None when it cannot be read (the node
    is then drawn as a labelled box: a picture must never fail because one image went missing)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((px, px))
            return np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError):
        return None


IMAGE_EDGE_LENGTH = 0.7  # target length of an image-of edge relative to an entity-entity edge


def _layout(subgraph: Subgraph, seed: int) -> np.ndarray:
    """Node positions [n, 2] within [-1, 1].

    Kamada-Kawai (stable, few crossings for the 10-40 node graphs retrieval returns), started
    from a seeded spring layout, on the undirected graph in which an ``image of`` edge is
    shorter than a relation edge: thumbnails stay beside their entity and, because every pair
    of nodes is held at its graph distance, off the edges between entities. Components hang
    from an invisible hub (Kamada-Kawai needs a connected graph); no edges -> a circle.
    """
    import networkx as nx

    n = subgraph.num_nodes
    if n <= 1:
        return np.zeros((n, 2))
    kinds = subgraph.node_kind
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for a, b in subgraph.edge_index.T.tolist():
        if a != b:
            w = 1.0 if kinds[a] == ENTITY and kinds[b] == ENTITY else IMAGE_EDGE_LENGTH
            g.add_edge(a, b, weight=min(w, g.edges[a, b]["weight"]) if g.has_edge(a, b) else w)
    if g.number_of_edges() == 0:
        pos = nx.circular_layout(g)
    else:
        comps = [sorted(c) for c in nx.connected_components(g)]
        if len(comps) > 1:
            # an invisible hub joins the components: they arrange around it (a chain of
            # virtual edges would string them out on a line)
            for c in comps:
                g.add_edge(-1, c[0], weight=1.5)
        pos = nx.kamada_kawai_layout(g, pos=nx.spring_layout(g, seed=seed), weight="weight")
    xy = np.array([pos[i] for i in range(n)], dtype=float)
    lo, hi = xy.min(0), xy.max(0)
    # fill the canvas: centre the bounding box and stretch each axis to [-1, 1]
    return np.where(hi > lo, (2 * xy - lo - hi) / np.where(hi > lo, hi - lo, 1.0), 0.0)


def render_subgraph(kg, subgraph: Subgraph, path: str | Path, title: str | None = None,
                    max_label: int = 22, seed: int = 0, dpi: int = 150) -> Path:
    """Draw ``subgraph`` (nodes and edges of ``kg``) to ``path`` and return the path.

    PNG, or SVG when ``path`` ends in ``.svg``; written atomically. Entity nodes show names
    (wrapped at ``max_label`` characters), image nodes show thumbnails, edges show
    ``relation name`` and the retrieval score to 2 decimals (``image of`` edges are dotted). Parallel edges between the same two
    nodes share one label. An empty subgraph gives a picture that says so. ``seed`` fixes the
    layout (same inputs -> same picture).
    """
    path = Path(path)
    fmt = picture_format(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    from matplotlib.patches import FancyArrowPatch

    n = subgraph.num_nodes
    src, dst = subgraph.edge_index
    pairs = list(zip(src.tolist(), dst.tolist()))
    pos = _layout(subgraph, seed)

    side = min(14.0, max(5.0, 2.2 * math.sqrt(max(n, 1)) + 2.0))
    fig = Figure(figsize=(side, side * 0.8))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.9 if title else 0.96))
    ax.set_axis_off()
    ax.set_xlim(-1.25, 1.25)
    ax.set_ylim(-1.25, 1.2)
    if title:
        fig.suptitle(textwrap.shorten(title, 110), fontsize=12, y=0.97)
    if n == 0:
        ax.text(0, 0, "empty subgraph: retrieval returned nothing", ha="center", va="center", fontsize=12, color="0.4")
        return save_figure(fig, path, fmt, dpi)

    ax.text(-1.23, -1.23, "bold box: seed entity  ·  arrow: head -> tail, relation and retrieval score  ·  "
            "dotted: image of  ·  memory xN: a training fact seen N times  ·  (copy): the example's tail, asked back",
            fontsize=7, color="0.4", ha="left", va="bottom")
    seeds = set(subgraph.seeds.tolist())
    copied = subgraph.copy_mask.tolist()
    node_ref = subgraph.node_ref.tolist()
    kinds = subgraph.node_kind.tolist()
    # ---- edges: one arrow per distinct (u, v), labels of parallel edges merged
    labels: dict[tuple[int, int], list[str]] = {}
    for (a, b), r, sc, tr in zip(pairs, subgraph.edge_type.tolist(), subgraph.edge_score.tolist(),
                                 subgraph.edge_triple.tolist()):
        name = kg.relation_names[r]
        text = f"{name} {sc:.2f}" if tr >= 0 else (f"{name} (memory x{sc:g})" if tr == MEMORY else name)
        labels.setdefault((a, b), []).append(text)
    node_r = 0.085  # radius (axes units) kept clear around a node for arrow ends
    for (a, b), texts in labels.items():
        if a == b:
            continue
        bend = 0.3 if (b, a) in labels else 0.0  # a pair linked both ways: curve apart
        is_image = kinds[a] != ENTITY or kinds[b] != ENTITY
        arrow = FancyArrowPatch(pos[a], pos[b], arrowstyle="-|>", mutation_scale=12,
                                connectionstyle=f"arc3,rad={bend}", color="0.55" if is_image else "0.25",
                                linestyle=":" if is_image else "-", lw=1.0 if is_image else 1.4,
                                shrinkA=0, shrinkB=0, zorder=1)
        # shrink by a fraction of the segment so arrow heads stop at the node's edge
        d = np.linalg.norm(pos[b] - pos[a]) or 1.0
        fr = min(0.45, node_r / d)
        arrow.set_positions(pos[a] + (pos[b] - pos[a]) * fr, pos[b] - (pos[b] - pos[a]) * fr)
        ax.add_patch(arrow)
        if is_image:  # the dotted style and the thumbnail say "image of"; the legend says so
            continue
        mid = (pos[a] + pos[b]) / 2
        if bend:
            normal = np.array([pos[b][1] - pos[a][1], pos[a][0] - pos[b][0]])
            mid = mid + normal * bend / 2
        ax.text(mid[0], mid[1], "\n".join(texts), fontsize=7, ha="center", va="center", zorder=3,
                color="#1a4c8b",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))

    # ---- nodes (thumbnails shrink a little in crowded pictures)
    zoom = 0.9 if n <= 16 else 0.7
    for i in range(n):
        x, y = pos[i]
        if kinds[i] == ENTITY:
            e = node_ref[i]
            label = "\n".join(textwrap.wrap(kg.entity_names[e], max_label)[:3]) or kg.entity_ids[e]
            label += "\n(copy)" if copied[i] else ""
            is_seed = e in seeds
            ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=4,
                    fontweight="bold" if is_seed else "normal",
                    bbox=dict(boxstyle="round,pad=0.35", fc="#fff4c2" if is_seed else "#e8f0fb",
                              ec="#b8860b" if is_seed else "#4a6fa5", lw=2.2 if is_seed else 1.0))
        elif kg.image_standin:  # a text stand-in for an image (kg build --image-standin): show its text
            text = kg.image_standin_text(node_ref[i])
            ax.text(x, y, "\n".join(["stand-in:"] + textwrap.wrap(text, max_label)[:2]), ha="center", va="center",
                    fontsize=7, style="italic", zorder=4, bbox=dict(boxstyle="square,pad=0.3", fc="0.95", ec="0.5"))
        else:
            img_path = kg.image_paths[node_ref[i]]
            arr = _thumbnail(img_path)
            if arr is None:
                ax.text(x, y, "image\n(unreadable)", ha="center", va="center", fontsize=7, zorder=4,
                        bbox=dict(boxstyle="square,pad=0.3", fc="0.9", ec="0.5"))
                continue
            box = AnnotationBbox(OffsetImage(arr, zoom=zoom), (x, y), frameon=True, pad=0.15, zorder=4,
                                 bboxprops=dict(ec="0.5", lw=0.8))
            ax.add_artist(box)
    return save_figure(fig, path, fmt, dpi)


def picture_format(path: Path) -> str:
    """matplotlib's format name for ``path``'s suffix (png or svg); an InputError naming the path otherwise."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"unsupported picture type {path.suffix!r}; expected one of {sorted(FORMATS)}", path=path)
    return fmt


def save_figure(fig, path: Path, fmt: str, dpi: int) -> Path:
    """Write ``fig`` (on an Agg canvas) to ``path`` atomically; SVGs are byte-reproducible."""
    import matplotlib

    buf = io.BytesIO()
    # SVG: text stays text (searchable, smaller), and no date stamp or random ids, so the same
    # graph gives the same bytes
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mrmkg"}):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
    atomic_write_bytes(path, buf.getvalue())
    return path
