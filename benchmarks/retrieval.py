"""Latency and recall of MR-MKG retrieval (A.6) against the brute-force baseline.

Whole retrieval = first-stage search + one-hop expansion + re-rank + Subgraph assembly, one query
at a time, from an already-encoded query vector (query encoding is timed separately). Three
ways to do the first stage, on the same graph, queries and expansion code:

* ``approx``  FAISS approximate index (HNSW or IVF, what ``IndexConfig`` picks for the size)
* ``exact``   FAISS ``IndexFlatIP`` (exact inner product = cosine on normalised vectors)
* ``brute``   the baseline of the unofficial implementations: ``torch.nn.functional.cosine_similarity``
              of the query against every triple embedding, then ``topk``; candidates are re-ranked
              with the same full similarity vector.

Recall: ``recall@n`` = overlap of the approximate first-stage top-n with the exact top-n;
``subgraph agreement`` = overlap of the final top-N triple sets (approx vs exact).

Datasets: MarKG (real, ../shared/data/markg, MiniLM triple embeddings through the embedding
cache; queries are MARS dev analogies written as text) and a synthetic graph with 1M triples
(synthetic clustered 384-d embeddings, heavy-tailed degrees; queries are noisy copies of
random triple vectors). Everything runs on one thread (torch, FAISS, BLAS) so numbers are
comparable across machines and with the test setup.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/retrieval.py [--triples 1000000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mrmkg.kg.graph import MMKG  # noqa: E402
from mrmkg.kg.index import IndexConfig, KGIndex  # noqa: E402
from mrmkg.kg.retrieve import RetrievalConfig, Retriever, expand, top_n_sorted  # noqa: E402
from mrmkg.kg.subgraph import Subgraph  # noqa: E402


# ---------------------------------------------------------------------------------- baseline
class BruteForce:
    """The unofficial implementations' retrieval: torch cosine similarity against every triple."""

    def __init__(self, kg: MMKG, triple_emb: np.ndarray, config: RetrievalConfig):
        self.kg, self.config = kg, config
        self.emb = torch.tensor(np.asarray(triple_emb))  # a writable copy (the index arrays may be mmapped)

    def retrieve_vectors(self, q: np.ndarray, query: str = "") -> Subgraph:
        cfg = self.config
        sims = F.cosine_similarity(self.emb, torch.from_numpy(q)[None], dim=1)  # [T]
        top = torch.topk(sims, cfg.n).indices.numpy()
        seeds = np.unique(self.kg.triples[top][:, [0, 2]])
        cands = expand(self.kg, seeds, cfg.hops)
        ids, scores = top_n_sorted(cands, sims.numpy()[cands], cfg.N)
        return Subgraph.from_triples(self.kg, ids, scores, seeds, query, cfg.images_per_entity)


def time_queries(fn, Q: np.ndarray, warmup: int = 3) -> tuple[np.ndarray, list]:
    """Per-query wall time in ms and the results."""
    for i in range(min(warmup, len(Q))):
        fn(Q[i])
    times, out = np.zeros(len(Q)), []
    for i, q in enumerate(Q):
        t = time.perf_counter_ns()
        out.append(fn(q))
        times[i] = (time.perf_counter_ns() - t) / 1e6
    return times, out


def summary(ms: np.ndarray) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "qps": round(float(1000.0 / ms.mean()), 1), "queries": int(len(ms))}


def sweep(approx: KGIndex, retriever: Retriever, Q: np.ndarray, exact_ids: np.ndarray, n: int) -> list:
    """Recall@n and whole-retrieval p50 for several efSearch (HNSW) / nprobe (IVF) values."""
    idx, cfg = approx.triple_index, approx.config
    if isinstance(idx, faiss.IndexHNSW):
        knob, values = "hnsw_ef_search", (16, 32, 64, 128, 256)
    elif isinstance(idx, faiss.IndexIVF):
        knob, values = "ivf_nprobe", (4, 8, 16, 32, 64)
    else:
        return []
    default, rows = getattr(cfg, knob), []
    for v in values:
        setattr(cfg, knob, v)
        if knob == "hnsw_ef_search":
            idx.hnsw.efSearch = v
        else:
            idx.nprobe = v
        _, ia = approx.search_triples(Q, n)
        ms, _ = time_queries(lambda q: retriever.retrieve_vectors(q), Q[:100])
        rows.append({knob: v, "recall_at_n": round(float(np.mean([overlap(a, e) for a, e in zip(ia, exact_ids)])), 4),
                     "p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4)})
        print(f"   sweep {knob}={v}: recall@n {rows[-1]['recall_at_n']}, p50 {rows[-1]['p50_ms']} ms", flush=True)
    setattr(cfg, knob, default)
    if knob == "hnsw_ef_search":
        idx.hnsw.efSearch = default
    else:
        idx.nprobe = default
    return rows


def stage_breakdown(kg: MMKG, approx: KGIndex, retriever: Retriever, Q: np.ndarray, cfg: RetrievalConfig) -> dict:
    """Median ms of each stage of the approximate pipeline (same steps as Retriever._assemble)."""
    st = {"search": [], "expand": [], "score": [], "top_N": [], "subgraph": [], "candidates": []}
    for q in Q:
        t0 = time.perf_counter_ns()
        _, ids = approx.search_triples(q[None], cfg.n)
        t1 = time.perf_counter_ns()
        seeds = np.unique(kg.triples[ids[0][ids[0] >= 0]][:, [0, 2]])
        cands = expand(kg, seeds, cfg.hops)
        t2 = time.perf_counter_ns()
        scores = retriever._score(cands, q, None)
        t3 = time.perf_counter_ns()
        top, ts = top_n_sorted(cands, scores, cfg.N)
        t4 = time.perf_counter_ns()
        Subgraph.from_triples(kg, top, ts, seeds, "", cfg.images_per_entity)
        t5 = time.perf_counter_ns()
        for k, a, b in (("search", t0, t1), ("expand", t1, t2), ("score", t2, t3), ("top_N", t3, t4),
                        ("subgraph", t4, t5)):
            st[k].append((b - a) / 1e6)
        st["candidates"].append(cands.size)
    out = {f"{k}_p50_ms": round(float(np.median(v)), 4) for k, v in st.items() if k != "candidates"}
    out["candidates_p50"] = int(np.median(st["candidates"]))
    out["candidates_max"] = int(np.max(st["candidates"]))
    return out


def overlap(a, b) -> float:
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return len(a & b) / max(1, len(b))


def run(name: str, kg: MMKG, triple_emb: np.ndarray, entity_emb: np.ndarray, relation_emb: np.ndarray,
        Q: np.ndarray, n_brute: int, n_exact: int, rcfg: RetrievalConfig, icfg: IndexConfig) -> dict:
    print(f"\n== {name}: {kg.num_triples:,} triples, {kg.num_entities:,} entities, "
          f"{len(Q)} queries ({n_exact} for exact FAISS, {n_brute} for brute force)", flush=True)
    t = time.perf_counter()
    approx = KGIndex.from_arrays(triple_emb, entity_emb, relation_emb, config=icfg)
    build_approx = time.perf_counter() - t
    t = time.perf_counter()
    exact = KGIndex.from_arrays(approx.triple_emb, approx.entity_emb, approx.relation_emb,
                                config=IndexConfig(exact_max=10**12))
    build_exact = time.perf_counter() - t
    print(f"   approx index {type(approx.triple_index).__name__} built in {build_approx:.1f} s; "
          f"exact in {build_exact:.1f} s", flush=True)
    ra = Retriever(kg, approx, rcfg)
    re = Retriever(kg, exact, rcfg)
    bf = BruteForce(kg, approx.triple_emb, rcfg)

    res = {"dataset": name, "triples": kg.num_triples, "entities": kg.num_entities,
           "mean_degree": round(float(kg.degree()[kg.degree() > 0].mean()), 2), "max_degree": int(kg.degree().max()),
           "index": type(approx.triple_index).__name__, "index_build_s": round(build_approx, 2),
           "n": rcfg.n, "N": rcfg.N, "hops": rcfg.hops}
    ta, out_a = time_queries(lambda q: ra.retrieve_vectors(q), Q)
    te, out_e = time_queries(lambda q: re.retrieve_vectors(q), Q[:n_exact])
    tb, out_b = time_queries(lambda q: bf.retrieve_vectors(q), Q[:n_brute])
    res["approx"], res["exact"], res["brute"] = summary(ta), summary(te), summary(tb)
    # first-stage recall@n, approx vs exact, in one batched call each
    _, ia = approx.search_triples(Q, rcfg.n)
    _, ie = exact.search_triples(Q, rcfg.n)
    res["recall_at_n"] = round(float(np.mean([overlap(a, e) for a, e in zip(ia, ie)])), 4)
    # recall / latency trade-off of the approximate index's query-time knob
    res["sweep"] = sweep(approx, ra, Q, ie, rcfg.n)
    res["stages"] = stage_breakdown(kg, approx, ra, Q, rcfg)
    print(f"   stages (p50 ms): {res['stages']}", flush=True)
    res["subgraph_agreement"] = round(float(np.mean([overlap(a.triple_ids, e.triple_ids)
                                                     for a, e in zip(out_a, out_e)])), 4)
    # sanity: the FAISS-exact and brute-force pipelines return the same subgraphs
    res["brute_vs_exact_agreement"] = round(float(np.mean([overlap(b.triple_ids, e.triple_ids)
                                                           for b, e in zip(out_b, out_e)])), 4)
    res["mean_candidates_kept"] = round(float(np.mean([s.triple_ids.size for s in out_a])), 2)
    res["speedup_approx_vs_brute_p50"] = round(res["brute"]["p50_ms"] / res["approx"]["p50_ms"], 1)
    res["speedup_exact_vs_brute_p50"] = round(res["brute"]["p50_ms"] / res["exact"]["p50_ms"], 1)
    for k in ("approx", "exact", "brute"):
        r = res[k]
        print(f"   {k:6s} p50 {r['p50_ms']:9.3f} ms  p99 {r['p99_ms']:9.3f} ms  {r['qps']:9.1f} q/s", flush=True)
    print(f"   recall@n {res['recall_at_n']}  subgraph agreement {res['subgraph_agreement']}  "
          f"speedup (p50) approx {res['speedup_approx_vs_brute_p50']}x, exact {res['speedup_exact_vs_brute_p50']}x",
          flush=True)
    return res


# ---------------------------------------------------------------------------------- datasets
def markg_data(data_dir, n_queries: int, seed: int, batch_size: int):
    from mrmkg.encoders.registry import get_text_encoder
    from mrmkg.kg.io import load_markg

    t = time.perf_counter()
    kg = load_markg(os.path.join(data_dir, "markg"))
    print(f"loaded MarKG in {time.perf_counter() - t:.1f} s", flush=True)
    enc = get_text_encoder("minilm")
    t = time.perf_counter()
    # through the embedding cache: the first run encodes 33k triples once (minutes), later runs load
    idx = KGIndex.build(kg, IndexConfig(vision_encoder=None, exact_max=10**12), text_encoder=enc, progress=True)
    print(f"embeddings ready in {time.perf_counter() - t:.1f} s", flush=True)
    # queries: MARS dev analogies as text ("h is to t as q is to ?"), the question entity's names
    texts = []
    mars = os.path.join(data_dir, "mars", "dev.json")
    if os.path.isfile(mars):
        with open(mars, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        rng = np.random.default_rng(seed)
        for j in rng.permutation(len(rows))[:n_queries].tolist():
            r = rows[j]
            try:
                h, t_, q = (kg.entity_names[kg.entity_index(e)] for e in (*r["example"], r["question"]))
            except KeyError:
                continue
            texts.append(f"{h} is to {t_} as {q} is to what?")
    if not texts:
        rng = np.random.default_rng(seed)
        texts = [kg.entity_names[i] for i in rng.choice(kg.num_entities, n_queries, replace=False)]
    t = time.perf_counter()
    Q = enc.encode(texts, batch_size=batch_size)
    batch_ms = (time.perf_counter() - t) * 1000 / len(texts)
    single = np.array([_timed(lambda s=s: enc.encode([s])) for s in texts[:50]])
    enc_stats = {"encoder": enc.name, "batched_ms_per_query": round(batch_ms, 3),
                 "single_p50_ms": round(float(np.percentile(single, 50)), 3),
                 "single_p99_ms": round(float(np.percentile(single, 99)), 3)}
    print(f"   query encoding ({enc.name}): batched {batch_ms:.2f} ms/query, single p50 "
          f"{enc_stats['single_p50_ms']} ms", flush=True)
    return kg, idx, np.ascontiguousarray(Q, dtype=np.float32), enc_stats


def _timed(fn) -> float:
    t = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t) / 1e6


def synthetic_data(n_triples: int, n_queries: int, seed: int, dim: int = 384):
    """A synthetic KG with clustered embeddings (SYNTHETIC: not text embeddings).

    Entities (n_triples/5) fall in 1,000 topic clusters; a triple's vector is
    normalise(e_head + r + e_tail + noise); heads and tails are drawn with Pareto(2) popularity
    (heavy-tailed degrees like real KGs) and a tail shares its head's cluster half the time.
    Queries are random triple vectors plus noise (cosine ~0.75 to their source).
    """
    rng = np.random.default_rng(seed)
    E, R, C = max(10, n_triples // 5), 100, 1000
    cent = rng.standard_normal((C, dim), dtype=np.float32)
    cl = rng.integers(0, C, E)
    ent = cent[cl] + 0.8 * rng.standard_normal((E, dim), dtype=np.float32)
    ent /= np.linalg.norm(ent, axis=1, keepdims=True)
    rel = rng.standard_normal((R, dim), dtype=np.float32)
    rel /= 2 * np.linalg.norm(rel, axis=1, keepdims=True)
    pop = rng.pareto(2.0, E) + 1.0
    pop /= pop.sum()
    heads = rng.choice(E, n_triples, p=pop)
    tails = rng.choice(E, n_triples, p=pop)
    # half the tails come from the head's cluster: pick a random entity of that cluster
    order = np.argsort(cl, kind="stable")
    starts = np.searchsorted(cl[order], np.arange(C))
    counts = np.bincount(cl, minlength=C)
    same = rng.random(n_triples) < 0.5
    hc = cl[heads[same]]
    tails[same] = order[starts[hc] + (rng.random(same.sum()) * counts[hc]).astype(np.int64)]
    rels = rng.integers(0, R, n_triples)
    emb = np.empty((n_triples, dim), np.float32)
    for s in range(0, n_triples, 100_000):  # chunked: avoids three 1.5 GB temporaries
        sl = slice(s, s + 100_000)
        x = ent[heads[sl]] + rel[rels[sl]] + ent[tails[sl]]
        x += 0.02 * rng.standard_normal(x.shape, dtype=np.float32)
        emb[sl] = x / np.linalg.norm(x, axis=1, keepdims=True)
    kg = MMKG(entity_ids=[f"E{i}" for i in range(E)], entity_names=[f"entity {i}" for i in range(E)],
              entity_descriptions=[""] * E, relation_ids=[f"R{i}" for i in range(R)],
              relation_names=[f"relation {i}" for i in range(R)],
              triples=np.stack([heads, rels, tails], axis=1))
    src = rng.choice(n_triples, n_queries, replace=False)
    Q = emb[src] + 0.03 * rng.standard_normal((n_queries, dim), dtype=np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    return kg, emb, ent, rel, np.ascontiguousarray(Q)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="shared data folder (default: ../shared/data)")
    ap.add_argument("--triples", type=int, default=1_000_000, help="synthetic graph size (0 = skip)")
    ap.add_argument("--queries", type=int, default=200, help="queries per dataset")
    ap.add_argument("--brute-queries", type=int, default=20, help="queries for the slow brute-force baseline")
    ap.add_argument("--exact-queries", type=int, default=100, help="queries timed with exact FAISS search")
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("-N", type=int, default=10)
    ap.add_argument("--skip-markg", action="store_true")
    ap.add_argument("--approx", default="auto", choices=["auto", "hnsw", "ivf"], help="IndexConfig.approx for MarKG")
    ap.add_argument("--synthetic-approx", default="ivf", choices=["auto", "hnsw", "ivf"],
                    help="IndexConfig.approx for the synthetic graph (HNSW construction of 1M vectors takes "
                         "many minutes on one core, IVF about two)")
    ap.add_argument("--exact-max", type=int, default=20_000, help="IndexConfig.exact_max")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    rcfg = RetrievalConfig(n=args.n, N=args.N, images_per_entity=0)
    icfg = IndexConfig(approx=args.approx, exact_max=args.exact_max)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
            "torch": torch.__version__, "faiss": faiss.__version__, "cpu": platform.processor() or platform.machine(),
            "threads": 1, "loadavg_start": os.getloadavg(), "argv": sys.argv[1:]}
    results = []
    if not args.skip_markg:
        from mrmkg.paths import shared_data_dir

        data = args.data or shared_data_dir()
        if data is None:
            print("MarKG skipped: ../shared/data not found", flush=True)
        else:
            kg, idx, Q, enc_stats = markg_data(str(data), args.queries, args.seed, 64)
            r = run("MarKG (real, MiniLM)", kg, idx.triple_emb, idx.entity_emb, idx.relation_emb, Q,
                    args.brute_queries, args.exact_queries, rcfg, icfg)
            r["query_encoding"] = enc_stats
            results.append(r)
    if args.triples:
        t = time.perf_counter()
        kg, emb, ent, rel, Q = synthetic_data(args.triples, args.queries, args.seed)
        print(f"synthetic graph generated in {time.perf_counter() - t:.1f} s", flush=True)
        scfg = IndexConfig(approx=args.synthetic_approx, exact_max=args.exact_max)
        results.append(run(f"synthetic {args.triples:,} triples (clustered embeddings)", kg, emb, ent, rel, Q,
                           args.brute_queries, args.exact_queries, rcfg, scfg))
    meta["loadavg_end"] = os.getloadavg()
    print(f"\nload average start {meta['loadavg_start']}, end {meta['loadavg_end']}")
    if args.json:
        from mrmkg.fileio import atomic_write_json

        atomic_write_json(args.json, {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
