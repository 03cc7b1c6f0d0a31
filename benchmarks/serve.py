"""Load on `mrmkg serve`: throughput and latency with micro-batching on and off, and a mixed run of
malformed and good requests whose good answers must equal the Pipeline's (`mrmkg ask`'s).

Each setting starts its own `mrmkg serve` subprocess on a free loopback port (127.0.0.1 only) with
the checkpoint, warms it up, then sends ``--requests`` POST /v1/answer at ``--concurrency`` (a fixed
number of client tasks taking request numbers from a counter: the loop ends by itself). Requests
cycle through questions of the checkpoint's world (demo checkpoints: the dev split's image, text
and analogy questions; pictures sent base64 in JSON), or ``--question`` / ``--image`` / ``--analogy``
for any other checkpoint. Reported per setting: errors (must be 0), p50 / p99 latency, requests/s, mean requests per
Pipeline call and the share of the wall time the model thread spent inside Pipeline calls (busy);
then the ratio of requests/s, batching on / off. The mixed run interleaves ``--bad`` malformed
requests (one of each kind, cycled) with ``--good`` good ones on the batching server: every bad one
must get a 4xx JSON error, every good one 200 and the candidates and triples of ``Pipeline`` called
alone in this process (what `mrmkg ask` prints): scores within 1e-5 (relative above 1) and ids equal but for the order
of tied candidates (a batch runs other matrix shapes, so the last float bits may differ); the count
equal bit for bit is printed too. The mixed run is done on both servers.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve.py [--checkpoint RUN] [--json out.json]

Without ``--checkpoint`` it trains the test suite's tiny demo checkpoint (tiny random LLaMA, MiniLM,
EfficientNet-Lite0) under ``--work`` first (~30 s).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workload(pipe, args) -> list[dict]:
    """The good requests (JSON bodies) the load cycles through."""
    if args.question or args.analogy:
        body = {"question": args.question or "", "top_k": args.top_k}
        if args.image:
            body["image"] = base64.b64encode(Path(args.image).read_bytes()).decode()
        if args.analogy:
            body["analogy"] = args.analogy
        return [body]
    world = getattr(pipe.task, "world", None)
    if world is None:
        sys.exit("this checkpoint is not a demo checkpoint: give --question (and --image / --analogy)")
    kg, out = world.kg, []
    for q in world.questions["dev"][: args.questions]:
        if q.type == "analogy":
            out.append({"analogy": [kg.entity_names[kg.entity_index(e)] for e in (*q.example, q.subject)],
                        "top_k": args.top_k})
        elif q.type == "image":
            out.append({"question": q.text, "image": base64.b64encode(Path(q.image).read_bytes()).decode(),
                        "top_k": args.top_k})
        else:
            out.append({"question": q.text, "top_k": args.top_k})
    return out


def reference(pipe, body: dict) -> dict:
    """What `mrmkg ask` answers for ``body``: the Pipeline alone, one question."""
    image = None
    if "image" in body:
        tmp = Path(tempfile.mkdtemp()) / "q.png"
        tmp.write_bytes(base64.b64decode(body["image"]))
        image = str(tmp)
    a = pipe(body.get("question", ""), image=image, analogy=body.get("analogy"), top_k=body["top_k"])
    return {"answer_id": a.answer_id, "candidates": [(c.id, c.score) for c in a.candidates],
            "triples": [t["id"] for t in (a.subgraph or {}).get("triples", [])]}


def malformed(good: dict) -> list[tuple[dict, dict]]:
    """(httpx request kwargs) of malformed requests, one per kind."""
    q = good.get("question") or "What does Vrosk eat?"
    img = base64.b64decode(good["image"]) if "image" in good else b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    return [
        {"json": {"question": 5}}, {"json": {"question": ""}}, {"json": {}}, {"json": [q]},
        {"json": {"question": q, "top_k": 0}}, {"json": {"question": q, "top_k": 10 ** 9}},
        {"json": {"question": q, "image": base64.b64encode(b"not a picture").decode()}},
        {"json": {"question": q, "image": base64.b64encode(img[: len(img) // 2]).decode()}},
        {"json": {"question": q, "image": "%%%"}}, {"json": {"analogy": ["Nosuchthing", "Zzz", "Qqq"]}},
        {"json": {"analogy": "a : b"}}, {"json": {"question": q, "extra": 1}},
        {"content": b"{", "headers": {"content-type": "application/json"}},
        {"content": b"question", "headers": {"content-type": "text/plain"}},
        {"json": {"question": "x" * 5000}},
    ]


class Server:
    def __init__(self, checkpoint: str, max_batch: int, max_wait_ms: float):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "mrmkg", "serve", checkpoint, "--port", str(self.port),
                                      "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--quiet"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, seconds: float = 300) -> None:
        import httpx

        end = time.time() + seconds
        while time.time() < end:
            if self.proc.poll() is not None:
                sys.exit(f"mrmkg serve exited ({self.proc.returncode}): {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        sys.exit("mrmkg serve did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)


def encode_request(host: str, port: int, kwargs: dict) -> bytes:
    """One ``POST /v1/answer`` as raw HTTP/1.1 bytes (keep-alive), from httpx-style kwargs
    (``json=`` or ``content=`` with ``headers=``)."""
    if "json" in kwargs:
        body, ctype = json.dumps(kwargs["json"]).encode(), "application/json"
    else:
        body = kwargs["content"]
        ctype = {k.lower(): v for k, v in kwargs.get("headers", {}).items()}.get("content-type", "application/json")
    head = (f"POST /v1/answer HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


async def _exchange(reader, writer, raw: bytes) -> tuple[int, bytes, bool]:
    """Send one request, read its response: (status, body, whether the server closes the connection)."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return int(lines[0].split()[1]), body, headers.get("connection", "").lower() == "close"


async def load(url: str, requests: list[dict], concurrency: int) -> list[tuple[int, float, dict | None]]:
    """Send ``requests`` (httpx-style kwargs) with ``concurrency`` client tasks, one keep-alive
    connection each; (status, seconds, body) each, in order.

    The client is a few lines of raw HTTP/1.1 over asyncio streams, with every request encoded
    before the clock starts and every response parsed after it stops: a load generator must not
    compete with the server for the two cores (httpx took ~20 % of a core at ~100 requests/s, and
    its per-request work sat between one micro-batch and the next)."""
    host, port = url.split("//", 1)[1].split(":")
    raws = [encode_request(host, int(port), r) for r in requests]
    out: list = [None] * len(requests)
    nxt = iter(range(len(requests)))

    async def worker():
        reader, writer = await asyncio.open_connection(host, int(port), limit=2 ** 22)
        try:
            for i in nxt:  # a shared iterator: the loop ends when every request has been sent
                t0 = time.perf_counter()
                status, body, closing = await _exchange(reader, writer, raws[i])
                out[i] = (status, time.perf_counter() - t0, body)
                if closing:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port), limit=2 ** 22)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    parsed = []
    for status, dt, body in out:
        try:
            parsed.append((status, dt, json.loads(body)))
        except ValueError:
            parsed.append((status, dt, None))
    return parsed


def summary(results, wall: float) -> dict:
    lat = sorted(dt for _, dt, _ in results)
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"requests": len(results), "errors": sum(s != 200 for s, _, _ in results), "p50_ms": 1000 * q[49],
            "p99_ms": 1000 * q[98], "req_per_s": len(results) / wall, "wall_s": wall}


def batch_stats(url: str) -> dict:
    """The answer batcher's counters so far, from the server's /metrics: requests batched, Pipeline
    calls, seconds inside those calls."""
    import httpx

    names = {'mrmkg_batch_size_sum{kind="answer"}': "requests", 'mrmkg_batch_size_count{kind="answer"}': "calls",
             'mrmkg_batch_seconds_sum{kind="answer"}': "seconds"}
    out = dict.fromkeys(names.values(), 0.0)
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        key, _, val = line.rpartition(" ")
        if key in names:
            out[names[key]] = float(val)
    return out


def run_setting(checkpoint, max_batch, args, bodies, mixed=None) -> dict:
    srv = Server(checkpoint, max_batch, args.max_wait_ms)
    try:
        srv.wait_ready()
        reqs = [{"json": bodies[i % len(bodies)]} for i in range(args.requests)]
        asyncio.run(load(srv.url, [{"json": b} for b in bodies] * 2, args.concurrency))  # warm-up: every question
        before = batch_stats(srv.url)
        t0 = time.perf_counter()
        res = asyncio.run(load(srv.url, reqs, args.concurrency))
        out = summary(res, time.perf_counter() - t0)
        after = batch_stats(srv.url)
        d = {k: after[k] - before[k] for k in after}
        out["mean_batch"] = d["requests"] / max(d["calls"], 1.0)
        # the share of the timed load during which the model thread was inside a Pipeline call
        out["model_busy"] = d["seconds"] / out["wall_s"]
        if mixed is not None:
            out["mixed"] = mixed(srv)
        return out
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="run folder of `mrmkg train` (default: train the tiny test one)")
    ap.add_argument("--work", default=None, help="folder for the tiny checkpoint (default: a temporary folder)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-batch", type=int, default=8, help="micro-batch size of the batching server")
    ap.add_argument("--max-wait-ms", type=float, default=15.0)
    ap.add_argument("--good", type=int, default=800, help="good requests of the mixed run")
    ap.add_argument("--bad", type=int, default=200, help="malformed requests of the mixed run")
    ap.add_argument("--questions", type=int, default=24, help="distinct demo questions cycled through")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--question", default=None)
    ap.add_argument("--image", default=None)
    ap.add_argument("--analogy", default=None, help="'head : tail :: question : ?'")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
    from mrmkg.pipeline import Pipeline
    from serve_fixture import same_ranking

    t0 = time.perf_counter()
    checkpoint = args.checkpoint
    if checkpoint is None:
        from serve_fixture import build_checkpoint

        work = Path(args.work or tempfile.mkdtemp(prefix="mrmkg-bench-serve-"))
        os.environ.setdefault("MRMKG_CACHE", str(work / "cache"))
        checkpoint = str(build_checkpoint(work)["run"])
        print(f"trained the tiny demo checkpoint in {time.perf_counter() - t0:.0f} s: {checkpoint}")
    pipe = Pipeline.from_pretrained(checkpoint)
    bodies = workload(pipe, args)
    refs = [reference(pipe, b) for b in bodies]

    def mixed(srv: Server) -> dict:
        bad = malformed(bodies[0])
        n = args.good + args.bad
        every = max(n // max(args.bad, 1), 1)
        plan, g, b = [], 0, 0
        for i in range(n):  # one bad request every `every`, the rest good: interleaved
            if b < args.bad and (i % every == every - 1 or n - i <= args.bad - b):
                plan.append(("bad", b % len(bad), bad[b % len(bad)]))
                b += 1
            else:
                plan.append(("good", g % len(bodies), {"json": bodies[g % len(bodies)]}))
                g += 1
        res = asyncio.run(load(srv.url, [p[2] for p in plan], args.concurrency))
        good_ok = bad_ok = same = exact = 0
        for (kind, j, _), (status, _, body) in zip(plan, res):
            if kind == "bad":
                bad_ok += 400 <= status < 500 and isinstance(body, dict) and bool(body.get("error"))
                continue
            if status != 200:
                continue
            good_ok += 1
            ref = refs[j]
            got = [(c["id"], c["score"]) for c in body["candidates"]]
            triples = [t["id"] for t in body["subgraph"]["triples"]] == ref["triples"]
            exact += got == ref["candidates"] and triples
            same += same_ranking(got, ref["candidates"]) and triples
        return {"good": g, "bad": b, "good_answered": good_ok, "good_equal_to_ask": same,
                "good_bitwise_equal_to_ask": exact, "bad_refused_4xx": bad_ok}

    results = {"checkpoint": checkpoint, "requests": args.requests, "concurrency": args.concurrency,
               "questions": len(bodies), "machine": f"{platform.processor() or platform.machine()}, "
                                                    f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"}
    results["batching"] = run_setting(checkpoint, args.max_batch, args, bodies, mixed)
    results["batching"]["max_batch"] = args.max_batch
    results["no_batching"] = run_setting(checkpoint, 1, args, bodies, mixed)
    results["ratio_req_per_s"] = results["batching"]["req_per_s"] / results["no_batching"]["req_per_s"]

    print(f"\n{args.requests} requests at concurrency {args.concurrency} on {checkpoint} ({len(bodies)} questions)")
    print(f"{'setting':<22}{'errors':>8}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'batch':>8}{'busy':>7}")
    for name, key in ((f"micro-batch {args.max_batch}", "batching"), ("batch size 1", "no_batching")):
        r = results[key]
        print(f"{name:<22}{r['errors']:>8}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['req_per_s']:>10.1f}"
              f"{r['mean_batch']:>8.1f}{100 * r['model_busy']:>6.0f}%")
    print(f"ratio of req/s (micro-batching / batch size 1): {results['ratio_req_per_s']:.2f}x")
    for key in ("batching", "no_batching"):
        m = results[key]["mixed"]
        print(f"mixed run ({key}): {m['bad']} malformed -> {m['bad_refused_4xx']} refused 4xx; {m['good']} good -> "
              f"{m['good_answered']} answered, {m['good_equal_to_ask']} equal to `mrmkg ask` (scores within 1e-5 "
              f"relative, tie order aside), {m['good_bitwise_equal_to_ask']} bit for bit")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    ok = all(results[k]["errors"] == 0 and results[k]["mixed"]["good_answered"] == results[k]["mixed"]["good"]
             == results[k]["mixed"]["good_equal_to_ask"] and results[k]["mixed"]["bad_refused_4xx"] == results[k]["mixed"]["bad"]
             for k in ("batching", "no_batching"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
