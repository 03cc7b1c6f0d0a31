"""A graph past MarKG's size: a synthetic 10M-triple MMKG built, indexed and retrieved on one small machine.

Phases (each timed; the JSON has them all):

1. **graph**: entities with Pareto(2) popularity (power-law degrees, like real KGs: a few hubs, a long
   tail), relations with Zipf frequencies, half the tails from the head's topic cluster, 10 % of the
   entities with 1-3 images; saved with ``MMKG.save(layout="mmap")`` (one ``.npy`` per array, CSR
   adjacency and entity strings memory-mapped on load).
2. **embeddings** (SYNTHETIC, not text embeddings): entities live in a 64-d latent space around 1,000
   topic centres; a triple's 384-d unit vector is ``normalise((z_head + z_rel + z_tail) P + noise)``,
   an image's is a second projection of its entity's latent. Low intrinsic dimension plus cluster
   structure, as sentence embeddings have, so ANN recall means something. Written chunk by chunk
   into ``.npy`` files (``np.lib.format.open_memmap``): the 15 GB triple matrix is never in memory.
3. **index**: ``KGIndex.from_arrays`` over the memory maps with ``IndexConfig(approx="ivfpq")``:
   OPQ + IVF + PQ trained on a sample, filled in chunks; ``save`` hard-links the ``.npy`` files.
4. **exact**: brute-force top-10 of the recall queries, streaming the triple matrix from disk.
5. **retrieve**, in a *fresh process* that only loads (``open_graph``: checksums, headers, memory maps)
   and retrieves: the whole A.6 procedure per query (IVF-PQ top-n with exact refine -> seeds -> one-hop
   expansion over the memory-mapped CSR -> exact re-rank of every candidate against the memory-mapped
   triple vectors -> top-N -> ``Subgraph`` with image nodes), one query at a time, one thread, from
   precomputed query vectors (20 % of the queries also carry an image vector). Reported: load time,
   p50/p99 latency, peak RSS (``ru_maxrss``: includes the pages of memory-mapped files the queries
   touched), recall@10 of ``index.search_triples`` against the exact top-10, a small nprobe/refine sweep,
   and the A.6 shortlist (candidates scored from PQ codes, ``shortlist x N`` re-scored exactly) against
   re-scoring every candidate exactly: p50 and top-N agreement for shortlist 1, 2, 4, 8.

The machine is shared (2 cores, other jobs): timings are noisy; the load average is recorded.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py [--triples 10000000] [--work DIR] [--seed 0]
        [--queries 1000] [--recall-queries 200] [--json results.json] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

DIM, LATENT, CLUSTERS = 384, 64, 1000
CHUNK = 250_000


def _rss_mb() -> float:
    """Peak resident set of this process in MB: ``VmHWM`` (ru_maxrss survives exec on Linux, so a child
    started by ``subprocess`` would report its parent's peak; VmHWM belongs to the new image)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_parts() -> dict:
    """Current ``RssAnon`` (the process's own memory) and ``RssFile`` (pages of memory-mapped files it has
    touched: reclaimable by the kernel, but counted in RSS) in MB."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("RssAnon:", "RssFile:")):
                out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def _du(path: Path) -> int:
    """Bytes of the regular files under ``path``, each inode once (the index hard-links the embeddings)."""
    seen, total = set(), 0
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


# ---------------------------------------------------------------------------------- 1. graph
def generate_graph(n_triples: int, seed: int, progress: bool = True):
    """The synthetic MMKG (module docstring) and the latent variables its embeddings are drawn from."""
    from tqdm.auto import tqdm

    from mrmkg.kg.graph import MMKG
    from mrmkg.kg.strings import StringTable

    rng = np.random.default_rng(seed)
    E, R = max(100, n_triples // 8), 500
    cl = rng.integers(0, CLUSTERS, E)
    pop = rng.pareto(2.0, E) + 1.0  # P(w > x) ~ x^-2: a power-law degree tail
    cdf = np.cumsum(pop / pop.sum())
    rel_p = 1.0 / np.arange(1, R + 1)
    rel_cdf = np.cumsum(rel_p / rel_p.sum())
    order = np.argsort(cl, kind="stable")
    starts = np.searchsorted(cl[order], np.arange(CLUSTERS))
    counts = np.bincount(cl, minlength=CLUSTERS)
    triples = np.empty((n_triples, 3), np.int64)
    for s in tqdm(range(0, n_triples, CHUNK), desc="triples", unit="chunk", disable=not progress):
        m = min(CHUNK, n_triples - s)
        h = np.minimum(np.searchsorted(cdf, rng.random(m)), E - 1)
        t = np.minimum(np.searchsorted(cdf, rng.random(m)), E - 1)
        same = rng.random(m) < 0.5  # half the tails share the head's topic
        hc = cl[h[same]]
        t[same] = order[starts[hc] + (rng.random(int(same.sum())) * counts[hc]).astype(np.int64)]
        r = np.minimum(np.searchsorted(rel_cdf, rng.random(m)), R - 1)
        triples[s:s + m] = np.stack([h, r, t], axis=1)
    with_img = np.flatnonzero(rng.random(E) < 0.10)
    n_img = rng.integers(1, 4, with_img.size)
    image_entity = np.repeat(with_img, n_img)
    ids = StringTable.from_strings((f"Q{i}" for i in range(E)), with_order=True)
    names = StringTable.from_strings(f"entity {i}" for i in range(E))
    descs = StringTable.from_strings(f"a thing of topic {c}" for c in cl.tolist())
    paths = StringTable.from_strings(f"img/{e}_{k}.jpg" for e, k in zip(
        image_entity.tolist(), np.concatenate([np.arange(k) for k in n_img]).tolist() if n_img.size else []))
    kg = MMKG(entity_ids=ids, entity_names=names, entity_descriptions=descs,
              relation_ids=[f"P{i}" for i in range(R)], relation_names=[f"relation {i}" for i in range(R)],
              triples=triples, image_paths=paths, image_entity=image_entity,
              meta={"synthetic": {"seed": seed, "generator": "benchmarks/scale.py"}})
    return kg, cl


# ---------------------------------------------------------------------------------- 2. embeddings
def write_embeddings(kg, cl: np.ndarray, out: Path, seed: int, progress: bool = True) -> dict[str, Path]:
    """Unit-row float32 ``.npy`` files for triples, entities, relations and images, written in chunks."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed + 1)
    out.mkdir(parents=True, exist_ok=True)
    cent = rng.standard_normal((CLUSTERS, LATENT), dtype=np.float32)
    z_ent = cent[cl] + 0.6 * rng.standard_normal((kg.num_entities, LATENT), dtype=np.float32)
    z_rel = 0.7 * rng.standard_normal((kg.num_relations, LATENT), dtype=np.float32)
    P = rng.standard_normal((LATENT, DIM), dtype=np.float32) / np.sqrt(LATENT)  # text space
    Pv = rng.standard_normal((LATENT, DIM), dtype=np.float32) / np.sqrt(LATENT)  # image space
    noise = 0.12  # per dimension: ~25 % of a triple vector's norm, so neighbours are not trivially exact
    paths = {}

    def write(name: str, n: int, rows_fn):
        p = out / f"{name}.npy"
        mm = np.lib.format.open_memmap(p, mode="w+", dtype=np.float32, shape=(n, DIM))  # header + sparse file
        offset = mm.offset
        del mm
        with open(p, "r+b") as f:  # plain writes: a writable map would keep 15 GB of dirty pages resident
            f.seek(offset)
            for s in tqdm(range(0, n, CHUNK), desc=f"{name} ({n:,})", unit="chunk",
                          disable=not progress or n < 2 * CHUNK):
                f.write(np.ascontiguousarray(rows_fn(s, min(n, s + CHUNK)), np.float32).tobytes())
        paths[name] = p

    def triple_rows(s, e):
        t = np.asarray(kg.triples[s:e])
        z = z_ent[t[:, 0]] + z_rel[t[:, 1]] + z_ent[t[:, 2]]
        x = z @ P + noise * rng.standard_normal((e - s, DIM), dtype=np.float32)
        return _unit(x)

    write("triple_emb", kg.num_triples, triple_rows)
    write("entity_emb", kg.num_entities,
          lambda s, e: _unit(z_ent[s:e] @ P + noise * rng.standard_normal((e - s, DIM), dtype=np.float32)))
    write("relation_emb", kg.num_relations, lambda s, e: _unit(z_rel[s:e] @ P))
    img_ent = np.asarray(kg.image_entity)
    write("image_emb", kg.num_images, lambda s, e: _unit(
        (z_ent[img_ent[s:e]] + 0.3 * rng.standard_normal((e - s, LATENT), dtype=np.float32)) @ Pv
        + noise * rng.standard_normal((e - s, DIM), dtype=np.float32)))
    return paths


def make_queries(graph_dir: Path, n: int, seed: int, image_frac: float = 0.2):
    """Query vectors: a random triple's vector plus noise (cosine ~0.85 to it), and for ``image_frac``
    of them an image vector near a picture of that triple's head (or any picture)."""
    from mrmkg.kg.graph import MMKG

    kg = MMKG.load(graph_dir)
    temb = np.load(graph_dir / "index" / "triple_emb.npy", mmap_mode="r")
    iemb = np.load(graph_dir / "index" / "image_emb.npy", mmap_mode="r")
    rng = np.random.default_rng(seed + 2)
    src = np.sort(rng.choice(kg.num_triples, n, replace=False))
    qt = _unit(np.asarray(temb[src]) + 0.035 * rng.standard_normal((n, DIM), dtype=np.float32))
    qv = np.zeros((n, DIM), np.float32)
    has_img = rng.random(n) < image_frac
    if kg.num_images:
        for i in np.flatnonzero(has_img).tolist():
            own = kg.images_of(int(kg.triples[src[i], 0]))
            im = int(own[0]) if own.size else int(rng.integers(kg.num_images))
            qv[i] = iemb[im] + 0.035 * rng.standard_normal(DIM, dtype=np.float32)
        qv[has_img] = _unit(qv[has_img])
    else:
        has_img[:] = False
    perm = rng.permutation(n)  # shuffle so the timed order is not file order
    return qt[perm], qv[perm], has_img[perm]


# ---------------------------------------------------------------------------------- 4. exact
def exact_topk(emb_path: Path, Q: np.ndarray, k: int, progress: bool = True) -> np.ndarray:
    """Exact top-``k`` ids by inner product, streaming the ``.npy`` matrix with plain reads (no mapping)."""
    from tqdm.auto import tqdm

    with open(emb_path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        (n, d), _, _ = read(f)
        best_s = np.full((Q.shape[0], k), -np.inf, np.float32)
        best_i = np.full((Q.shape[0], k), -1, np.int64)
        buf = np.empty((CHUNK, d), np.float32)
        for s in tqdm(range(0, n, CHUNK), desc="exact top-10", unit="chunk", disable=not progress):
            m = min(CHUNK, n - s)
            f.readinto(memoryview(buf[:m]).cast("B"))
            sc = Q @ buf[:m].T
            part = np.argpartition(-sc, k - 1, axis=1)[:, :k] if m > k else np.tile(np.arange(m), (Q.shape[0], 1))
            cs = np.concatenate([best_s, np.take_along_axis(sc, part, 1)], 1)
            ci = np.concatenate([best_i, part + s], 1)
            top = np.argsort(-cs, axis=1, kind="stable")[:, :k]
            best_s, best_i = np.take_along_axis(cs, top, 1), np.take_along_axis(ci, top, 1)
    return best_i


# ---------------------------------------------------------------------------------- 5. retrieve (fresh process)
def retrieve_main(work: Path, n_queries: int, sweep: bool) -> dict:
    """Runs in a fresh process: load, retrieve every query, measure. Returns the JSON-ready results."""
    import faiss

    faiss.omp_set_num_threads(1)
    from mrmkg.kg.index import _is_pq
    from mrmkg.kg.retrieve import RetrievalConfig, Retriever, expand, open_graph

    rss0 = _rss_mb()
    t0 = time.perf_counter()
    kg, index = open_graph(work / "graph")
    load_s = time.perf_counter() - t0
    rss_load = _rss_mb()
    q = np.load(work / "queries.npz")
    qt, qv, has_img = q["text"][:n_queries], q["image"][:n_queries], q["has_image"][:n_queries]
    cfg = RetrievalConfig()  # paper: n = 10, N = 10, one hop; one image node per entity
    retriever = Retriever(kg, index, cfg)
    lat, cands, triples_out = [], [], []
    for i in range(len(qt)):
        t = time.perf_counter()
        sg = retriever.retrieve_vectors(qt[i], qv[i] if has_img[i] else None, query=f"q{i}")
        lat.append(time.perf_counter() - t)
        triples_out.append(int(sg.triple_ids.size))
    rss_retrieve, rss_parts = _rss_mb(), _rss_parts()
    lat_ms = np.array(lat) * 1000
    # first stage alone, and the candidate-set sizes that drive the re-rank cost
    t = time.perf_counter()
    _, first = index.search_triples(qt, cfg.n)
    first_ms = (time.perf_counter() - t) * 1000 / len(qt)
    for i in range(min(200, len(qt))):
        seeds = np.unique(kg.triples[first[i][first[i] >= 0]][:, [0, 2]])
        cands.append(int(expand(kg, seeds, cfg.hops).size))
    # recall@10 of the compressed index against exact search
    rq = np.load(work / "exact.npz")
    Qr, gt = rq["queries"], rq["ids"]
    _, got = index.search_triples(Qr, 10)
    recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(got, gt)]))
    # the shortlist (RetrievalConfig.shortlist: expanded candidates scored from PQ codes, the best
    # shortlist x N re-scored exactly) against re-scoring every candidate exactly. Timed on 200 queries
    # the loop above did not run (rows a query reads stay in the page cache: a repeat would be warm),
    # alternating the two settings so both meet the same cache; agreement of the top N on the same queries.
    tail = slice(n_queries, n_queries + 200)
    qt2, qv2, hi2 = q["text"][tail], q["image"][tail], q["has_image"][tail]
    shortlist = {"queries": len(qt2), "default": cfg.shortlist}
    if len(qt2):
        full = Retriever(kg, index, RetrievalConfig(shortlist=0))
        args2 = [(qt2[i], qv2[i] if hi2[i] else None) for i in range(len(qt2))]
        timed = {"exact": [], "shortlist": []}
        for i, a in enumerate(args2):
            which, r = ("exact", full) if i % 2 else ("shortlist", retriever)
            t = time.perf_counter()
            r.retrieve_vectors(*a)
            timed[which].append(time.perf_counter() - t)
        for k, v in timed.items():
            shortlist[f"{k}_p50_ms"] = round(float(np.percentile(np.array(v) * 1000, 50)), 3)
        ref = [full.retrieve_vectors(*a).triple_ids for a in args2]
        for k in (1, 2, 4, 8):
            r = Retriever(kg, index, RetrievalConfig(shortlist=k))
            got = [r.retrieve_vectors(*a).triple_ids for a in args2]
            shortlist[f"agreement@{k}"] = round(float(np.mean([len(set(x.tolist()) & set(y.tolist())) / max(1, len(x))
                                                              for x, y in zip(ref, got)])), 4)
    rows = []
    if sweep and _is_pq(index.triple_index):
        ivf = faiss.extract_index_ivf(index.triple_index)
        keep = (ivf.nprobe, index.config.refine)
        for nprobe in (8, 16, 32, 64):
            for refine in (1, 2, 4, 8):
                ivf.nprobe, index.config.refine = nprobe, refine
                t = time.perf_counter()
                _, got = index.search_triples(Qr, 10)
                ms = (time.perf_counter() - t) * 1000 / len(Qr)
                rows.append({"nprobe": nprobe, "refine": refine, "ms_per_query": round(ms, 3),
                             "recall@10": round(float(np.mean([len(set(a.tolist()) & set(b.tolist())) / 10
                                                               for a, b in zip(got, gt)])), 4)})
        ivf.nprobe, index.config.refine = keep
    return {
        "load_seconds": round(load_s, 3),
        "rss_mb": {"start": round(rss0, 1), "after_load": round(rss_load, 1), "peak_retrieving": round(rss_retrieve, 1),
                   "after_retrieving": rss_parts},
        "queries": len(qt), "queries_with_image": int(has_img.sum()),
        "latency_ms": {"p50": round(float(np.percentile(lat_ms, 50)), 3), "p90": round(float(np.percentile(lat_ms, 90)), 3),
                       "p99": round(float(np.percentile(lat_ms, 99)), 3), "max": round(float(lat_ms.max()), 3),
                       "mean": round(float(lat_ms.mean()), 3),
                       "p50_first_100": round(float(np.percentile(lat_ms[:100], 50)), 3),
                       "p50_last_100": round(float(np.percentile(lat_ms[-100:], 50)), 3)},
        "first_stage_ms_per_query": round(first_ms, 3),
        "shortlist": shortlist,
        "candidates": {"p50": int(np.percentile(cands, 50)), "p99": int(np.percentile(cands, 99)), "max": int(max(cands))},
        "triples_per_subgraph_min": int(min(triples_out)),
        "recall@10": round(recall, 4), "recall_queries": int(len(Qr)),
        "sweep": rows,
        "memory_mapped": {"graph_csr": bool(kg.memory_mapped),
                          "triple_emb": type(index.triple_emb).__name__,
                          "faiss_invlists": type(faiss.extract_index_ivf(index.triple_index).invlists).__name__
                          if _is_pq(index.triple_index) else None},
    }


# ---------------------------------------------------------------------------------- driver
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--triples", type=int, default=10_000_000, help="synthetic graph size")
    ap.add_argument("--work", default=None, help="working folder (default: /tmp/mrmkg-scale-<triples>); the graph "
                                                 "folder is WORK/graph")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=1000, help="timed A.6 queries")
    ap.add_argument("--recall-queries", type=int, default=200, help="queries for recall@10 against exact search")
    ap.add_argument("--nlist", type=int, default=0, help="IVF lists (0 = sqrt(triples) rounded up to a power of "
                                                        "two: 4096 at 10M)")
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--pq-m", type=int, default=48, help="PQ bytes per vector")
    ap.add_argument("--refine", type=int, default=4, help="IndexConfig.refine")
    ap.add_argument("--threads", type=int, default=1, help="FAISS/BLAS threads while building (retrieval: 1)")
    ap.add_argument("--reuse", action="store_true", help="skip phases whose output exists in WORK")
    ap.add_argument("--no-sweep", action="store_true", help="skip the nprobe/refine recall sweep")
    ap.add_argument("--query-seed", type=int, default=None, help="with --reuse: new queries (and their exact "
                    "top-10) from this seed, so a re-run does not meet the pages its predecessor's queries cached")
    ap.add_argument("--keep", action="store_true", help="keep WORK afterwards (default: delete it)")
    ap.add_argument("--json", default=None, help="write the results here (default: WORK/../scale-<triples>.json)")
    ap.add_argument("--retrieve-only", default=None, help=argparse.SUPPRESS)  # the fresh child process
    args = ap.parse_args(argv)
    if args.retrieve_only:
        print(json.dumps(retrieve_main(Path(args.retrieve_only), args.queries, not args.no_sweep)))
        return 0

    import faiss

    from mrmkg.fileio import atomic_write_json
    from mrmkg.kg.index import IndexConfig, KGIndex

    faiss.omp_set_num_threads(args.threads)
    work = Path(args.work or f"/tmp/mrmkg-scale-{args.triples}")
    gdir = work / "graph"
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(), "numpy": np.__version__,
            "faiss": faiss.__version__, "cpus": os.cpu_count(), "build_threads": args.threads,
            "loadavg_start": os.getloadavg(), "argv": sys.argv[1:], "triples": args.triples, "seed": args.seed}
    phases: dict[str, float] = {}

    def phase(name, fn):
        t = time.perf_counter()
        print(f"== {name}", flush=True)
        out = fn()
        phases[name] = round(time.perf_counter() - t, 2)
        print(f"   {name}: {phases[name]:.1f} s (peak RSS so far {_rss_mb():.0f} MB)", flush=True)
        return out

    nlist = args.nlist or 1 << int(np.ceil(np.log2(max(2.0, np.sqrt(args.triples)))))
    config = IndexConfig(approx="ivfpq", ivf_nlist=nlist, ivf_nprobe=args.nprobe, pq_m=args.pq_m,
                         refine=args.refine, seed=args.seed)
    done = args.reuse and (gdir / "index" / "checksums.json").is_file() and (work / "exact.npz").is_file()
    if not done:
        if work.exists():
            shutil.rmtree(work)
        kg, cl = phase("generate graph", lambda: generate_graph(args.triples, args.seed))
        phase("save graph (mmap layout)", lambda: kg.save(gdir, layout="mmap"))
        paths = phase("write embeddings", lambda: write_embeddings(kg, cl, work / "emb", args.seed))
        del cl

        def build_index():
            arrays = {k: np.load(p, mmap_mode="r") for k, p in paths.items()}
            return KGIndex.from_arrays(arrays["triple_emb"], arrays["entity_emb"], arrays["relation_emb"],
                                       arrays["image_emb"], config=config, text_encoder_id="synthetic",
                                       vision_encoder_id="synthetic", kg=kg, progress=True)

        index = phase("build index (train + add)", build_index)
        phase("save index", lambda: index.save(gdir))
        del index, kg
        shutil.rmtree(work / "emb")  # the index folder holds hard links to the same files
    if not done or args.query_seed is not None:
        qseed = args.seed if args.query_seed is None else args.query_seed

        def queries():
            qt, qv, has = make_queries(gdir, args.queries + 200, qseed)  # 200 more: the shortlist comparison
            np.savez(work / "queries.npz", text=qt, image=qv, has_image=has)
            rng = np.random.default_rng(qseed + 3)
            Qr = qt[rng.choice(args.queries, min(args.recall_queries, args.queries), replace=False)]
            return Qr

        Qr = phase("queries", queries)
        gt = phase("exact top-10 (recall ground truth)", lambda: exact_topk(gdir / "index" / "triple_emb.npy", Qr, 10))
        np.savez(work / "exact.npz", queries=Qr, ids=gt)
    build_rss = _rss_mb()

    print("== retrieve (fresh process: load + A.6 per query)", flush=True)
    t = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--retrieve-only", str(work), "--queries", str(args.queries)]
    if args.no_sweep:
        cmd.append("--no-sweep")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        return proc.returncode
    retrieval = json.loads(proc.stdout.strip().splitlines()[-1])
    phases["retrieve process (wall)"] = round(time.perf_counter() - t, 2)

    sizes = {"graph_arrays": sum(p.stat().st_size for p in gdir.iterdir() if p.is_file()),
             "triple_index_faiss": (gdir / "index" / "triples.faiss").stat().st_size,
             "image_index_faiss": (gdir / "index" / "images.faiss").stat().st_size,
             "embeddings_npy": sum((gdir / "index" / f"{n}.npy").stat().st_size
                                   for n in ("triple_emb", "entity_emb", "relation_emb", "image_emb")),
             "total": _du(gdir)}
    manifest = json.loads((gdir / "index" / "manifest.json").read_text())
    graph = json.loads((gdir / "graph.json").read_text())
    res = {"meta": {**meta, "loadavg_end": os.getloadavg()}, "graph": graph["counts"],
           "index": {"triple_index": manifest["triple_index"], "config": manifest["config"]},
           "build_seconds": phases, "build_peak_rss_mb": round(build_rss, 1),
           "disk_bytes": sizes, "disk_gb": {k: round(v / 1e9, 3) for k, v in sizes.items()},
           "retrieval": retrieval,
           "targets": {"peak_rss_le_4gb": retrieval["rss_mb"]["peak_retrieving"] <= 4096,
                       "p50_le_5ms": retrieval["latency_ms"]["p50"] <= 5.0,
                       "recall_ge_0.9": retrieval["recall@10"] >= 0.9}}
    out = Path(args.json or work.parent / f"scale-{args.triples}.json")
    atomic_write_json(out, res)
    r = retrieval
    sl = r["shortlist"]
    print(f"\n{args.triples:,} triples ({graph['counts']['entities']:,} entities, {graph['counts']['images']:,} images): "
          f"disk {sizes['total'] / 1e9:.2f} GB, build {sum(v for k, v in phases.items() if 'retrieve' not in k):.0f} s, "
          f"load {r['load_seconds']:.2f} s\nA.6 p50 {r['latency_ms']['p50']:.2f} ms, p99 {r['latency_ms']['p99']:.2f} ms; "
          f"peak RSS {r['rss_mb']['peak_retrieving']:.0f} MB; recall@10 {r['recall@10']:.3f}; "
          f"candidates p50 {r['candidates']['p50']:,}\nshortlist {sl['default']} x N: p50 {sl.get('shortlist_p50_ms', 0):.2f} ms "
          f"against {sl.get('exact_p50_ms', 0):.2f} ms re-scoring every candidate exactly (fresh queries, alternated); "
          f"top-N agreement {sl.get('agreement@%d' % sl['default'], 0):.3f}\nresults: {out}", flush=True)
    if not args.keep:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
