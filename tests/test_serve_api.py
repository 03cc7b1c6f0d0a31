"""`mrmkg serve`'s API (FastAPI's test client) around a small real demo checkpoint: every endpoint,
every limit, malformed requests answered 4xx JSON with a message (never a 500), the server still
answering after them, micro-batching, and answers equal to the Pipeline's (`mrmkg ask`'s)."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import threading
import zlib

import pytest
from PIL import Image

pytestmark = pytest.mark.weights("minilm", "efficientnet-lite0")

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from mrmkg.serve import ServeConfig, create_app  # noqa: E402
from mrmkg.serve.batching import MicroBatcher  # noqa: E402
from serve_fixture import same_ranking  # noqa: E402

LIMITS = dict(max_body_bytes=300_000, max_image_pixels=1_000_000, max_question_chars=200, max_top_k=20)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from serve_fixture import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def pipe(world):
    from mrmkg.pipeline import Pipeline

    return Pipeline.from_pretrained(world["run"])


@pytest.fixture(scope="module")
def client(pipe):
    with TestClient(create_app(pipe, config=ServeConfig(**LIMITS)), raise_server_exceptions=False) as c:
        yield c


def b64(path) -> str:
    return base64.b64encode(open(path, "rb").read()).decode()


def same(api: dict, ans) -> None:
    """The API's answer is the Pipeline's: answer, candidates with their scores, the triples read."""
    assert api["answer"] == ans.answer and api["answer_id"] == ans.answer_id
    assert [(c["id"], c["name"], c["score"]) for c in api["candidates"]] == \
           [(c.id, c.name, c.score) for c in ans.candidates]
    assert api["subgraph"]["triples"] == ans.subgraph["triples"]
    assert [e["triple"] for e in api["subgraph"]["edges"]] == [e["triple"] for e in ans.subgraph["edges"]]


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds almost no data (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------------------------- answers
def test_answers_equal_the_pipeline_json_and_multipart(client, pipe, world):
    q, img = world["question"], world["image"]
    ref = pipe(q, image=str(img), top_k=3)
    r = client.post("/v1/answer", json={"question": q, "image": b64(img), "top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    same(body, ref)
    assert set(body["timings"]) >= {"encode", "retrieve", "model", "total"}
    images = [n for n in body["subgraph"]["nodes"] if n["kind"] == "image"]
    assert images and all(n["image_url"].startswith("/v1/images/") for n in images)
    with open(img, "rb") as f:
        r = client.post("/v1/answer", data={"question": q, "top_k": "3"}, files={"image": ("q.png", f, "image/png")})
    assert r.status_code == 200, r.text
    same(r.json(), ref)
    data_url = "data:image/png;base64," + b64(img)
    assert client.post("/v1/answer", json={"question": q, "image": data_url, "top_k": 3}).json()["candidates"] == \
        body["candidates"]

    text = world["text_question"]
    same(client.post("/v1/answer", json={"question": text, "top_k": 4}).json(), pipe(text, top_k=4))
    h, t, x = world["analogy"]
    ref = pipe(analogy=(h, t, x), top_k=5)
    same(client.post("/v1/answer", json={"analogy": [h, t, x]}).json(), ref)
    same(client.post("/v1/answer", json={"analogy": f"{h} : {t} :: {x} : ?"}).json(), ref)
    same(client.post("/v1/answer", data={"analogy": f"{h} : {t} :: {x} : ?"}).json(), ref)


def test_answer_equals_mrmkg_ask(client, world, capsys):
    from mrmkg.cli import main

    q, img = world["question"], world["image"]
    assert main(["ask", str(world["run"]), q, "--image", str(img), "--top-k", "3", "--json"]) == 0
    asked = json.loads(capsys.readouterr().out)
    api = client.post("/v1/answer", json={"question": q, "image": b64(img), "top_k": 3}).json()
    for key in ("answer", "answer_id", "candidates"):
        assert api[key] == asked[key]
    assert api["subgraph"]["triples"] == asked["subgraph"]["triples"]


def test_retrieve_gives_the_subgraph_the_answer_read(client, pipe, world):
    q, img = world["question"], world["image"]
    r = client.post("/v1/retrieve", json={"question": q, "image": b64(img)})
    assert r.status_code == 200, r.text
    assert r.json()["subgraph"]["triples"] == pipe(q, image=str(img)).subgraph["triples"]
    assert "answer" not in r.json() and set(r.json()["timings"]) >= {"encode", "retrieve", "total"}


def test_entities_info_images_health_metrics(client, pipe, world):
    kg = pipe.task.kg
    name = world["analogy"][0]
    r = client.get("/v1/entities", params={"q": name[:3].lower()})
    assert r.status_code == 200
    hits = r.json()["entities"]
    assert name in [e["name"] for e in hits] and all(name[:3].lower() in e["name"].lower() or
                                                     name[:3].lower() in e["id"].lower() for e in hits)
    assert len(client.get("/v1/entities", params={"q": "", "limit": 7}).json()["entities"]) == 7
    assert client.get("/v1/entities", params={"q": "zzzzqqq"}).json() == {"query": "zzzzqqq", "entities": [], "total": 0}

    info = client.get("/v1/info").json()
    assert info["task"] == "demo" and info["output"] == "rank" and "analogy" in info["inputs"]
    assert info["graph"] == {"entities": len(kg.entity_ids), "relations": len(kg.relation_ids),
                             "triples": len(kg.triples), "images": len(kg.image_paths)}
    assert info["text_encoder"] and info["vision_encoder"] and info["limits"]["max_top_k"] == LIMITS["max_top_k"]

    r = client.get("/v1/images/0")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(r.content)).size) <= 256
    for bad, status in (("999999", 404), ("-1", 404), ("x", 422), ("..%2F..%2Fetc%2Fpasswd", 422)):
        r = client.get(f"/v1/images/{bad}")
        assert r.status_code in (status, 404) and r.json()["error"], bad

    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    page = client.get("/")
    assert page.status_code == 200 and 'id="graph-svg"' in page.text and "http" not in page.text.split("<body")[0].replace(
        'href="/static', "")  # nothing from a CDN
    for asset in ("app.js", "graph.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/answer", "/v1/retrieve", "/v1/entities", "/v1/info", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/answer"]["post"]["requestBody"]["content"]

    m = client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    for needle in ('mrmkg_http_requests_total{method="POST",path="/v1/answer",status="200"}',
                   "mrmkg_http_request_seconds_bucket", "mrmkg_batch_size_bucket", "mrmkg_model_ready 1.0"):
        assert needle in m.text, needle


def test_the_server_loads_the_lazy_encoders_before_it_is_ready(world):
    from mrmkg.pipeline import Pipeline

    p = Pipeline.from_pretrained(world["run"])
    r = p.task.retriever
    assert r._text_encoder is None and r._vision_encoder is None  # the first question would load them
    assert p.warm_up() is p
    assert r._text_encoder is not None and r._vision_encoder is not None


def test_readyz_before_the_model_is_loaded(tmp_path):
    app = create_app(checkpoint=str(tmp_path / "missing"))
    with TestClient(app) as c:
        for _ in range(200):  # the background load fails fast; bounded wait
            r = c.get("/readyz")
            if "failed" in r.json()["error"]:
                break
            threading.Event().wait(0.02)
        assert r.status_code == 503 and "checkpoint not found" in r.json()["error"]
        r = c.post("/v1/answer", json={"question": "hi"})
        assert r.status_code == 503 and "failed to load" in r.json()["error"]
        assert c.get("/healthz").status_code == 200


# ---------------------------------------------------------------------------------------------- bad requests
def _malformed(world, img_bytes: bytes):
    q = world["question"]
    big = io.BytesIO()
    Image.new("RGB", (1200, 1000), (200, 10, 10)).save(big, format="PNG")  # 1.2 MP > the 1 MP limit, small file
    return [
        ("wrong type: question a number", dict(json={"question": 5}), 422, "question"),
        ("wrong type: top_k a string", dict(json={"question": q, "top_k": "five"}), 422, "top_k"),
        ("wrong type: body a list", dict(json=[q]), 422, "JSON object"),
        ("missing fields: empty object", dict(json={}), 422, "question is empty"),
        ("empty question", dict(json={"question": "   "}), 422, "question is empty"),
        ("unknown field", dict(json={"question": q, "qestion": q}), 422, "unknown field 'qestion'"),
        ("invalid JSON", dict(content=b'{"question": ', headers={"content-type": "application/json"}), 422, "not valid JSON"),
        ("empty body", dict(content=b"", headers={"content-type": "application/json"}), 422, "JSON object"),
        ("image that is text", dict(json={"question": q, "image": base64.b64encode(b"just some text").decode()}), 400,
         "not a picture"),
        ("image not base64", dict(json={"question": q, "image": "%%% not base64 %%%"}), 400, "not valid base64"),
        ("truncated PNG", dict(json={"question": q, "image": base64.b64encode(img_bytes[: len(img_bytes) // 2]).decode()}),
         400, "could not be decoded"),
        ("100-megapixel PNG", dict(json={"question": q, "image": base64.b64encode(png_header(10_000, 10_000)).decode()}),
         413, "100.0 megapixels"),
        ("1.2-megapixel PNG over the limit", dict(files={"image": ("big.png", big.getvalue(), "image/png")},
                                                  data={"question": q}), 413, "1.2 megapixels"),
        ("unknown entity", dict(json={"analogy": ["Nosuchthing", "Zzz", "Qqq"]}), 422, "no entity has the id or name"),
        ("analogy of two", dict(json={"analogy": ["a", "b"]}), 422, "three non-empty"),
        ("analogy malformed string", dict(json={"analogy": "a : b"}), 422, "head : tail :: question"),
        ("top_k 0", dict(json={"question": q, "top_k": 0}), 422, "top_k must be between 1 and 20"),
        ("top_k 10^9", dict(json={"question": q, "top_k": 10 ** 9}), 422, "top_k must be between 1 and 20"),
        ("top_k huge integer", dict(json={"question": q, "top_k": 10 ** 30}), 422, "top_k"),
        ("question too long", dict(json={"question": "x" * 201}), 422, "the limit is 200"),
        ("wrong content type", dict(content=b"question=hi", headers={"content-type": "text/plain"}), 415,
         "application/json"),
        ("no content type", dict(content=b"hi"), 415, "content type"),
        ("oversize body (declared)", dict(json={"question": q, "image": "A" * 400_000}), 413, "larger than 300000 bytes"),
        ("oversize body (streamed, no length)", dict(content=iter([b'{"question": "', b"x" * 200_000, b"x" * 200_000, b'"}']),
                                                     headers={"content-type": "application/json"}), 413, "larger than"),
        ("multipart: image as text field", dict(files={"question": (None, q), "image": (None, "not a file")}), 400,
         "file upload"),
        ("multipart: top_k not a number", dict(data={"question": q, "top_k": "many"}), 422, "top_k must be an integer"),
        ("multipart: broken form", dict(content=b"--xx\r\nbroken", headers={"content-type": "multipart/form-data; boundary=xx"}),
         None, ""),
        ("choices of one", dict(json={"question": q, "choices": ["only"]}), 422, "choices"),
    ]


def test_malformed_requests_get_4xx_json_and_the_server_keeps_serving(client, pipe, world):
    img = open(world["image"], "rb").read()
    cases = _malformed(world, img)
    assert len(cases) >= 15
    for name, kw, status, needle in cases:
        r = client.post("/v1/answer", **kw)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        if status is not None:
            assert r.status_code == status, (name, r.text)
        body = r.json()
        assert set(body) == {"status", "error", "field"} and body["status"] == r.status_code, name
        assert needle in body["error"] and "Traceback" not in r.text, (name, body)
    for path, kw in (("/v1/retrieve", dict(json={"question": ""})), ("/v1/entities?limit=0", {}),
                     ("/v1/entities?limit=x", {}), ("/v1/answer", {}), ("/nowhere", {})):
        r = client.post(path, **kw) if path.startswith("/v1/r") else client.get(path, **kw)
        assert 400 <= r.status_code < 500 and r.json()["error"], path
    assert client.get("/v1/answer").status_code == 405
    # still serving, and still right
    q = world["question"]
    same(client.post("/v1/answer", json={"question": q, "image": base64.b64encode(img).decode(), "top_k": 3}).json(),
         pipe(q, image=str(world["image"]), top_k=3))
    assert 'status="500"' not in client.get("/metrics").text


def test_timeout_and_limits_are_settings(pipe, world):
    with TestClient(create_app(pipe, config=ServeConfig(timeout_s=1e-6))) as c:
        r = c.post("/v1/answer", json={"question": world["text_question"]})
        assert r.status_code == 504 and "no answer within" in r.json()["error"]
    from mrmkg.errors import InputError

    with pytest.raises(InputError, match="must be >= 1"):
        ServeConfig(max_batch=0)


def test_serve_refuses_a_missing_checkpoint_with_one_line(tmp_path, capsys):
    from mrmkg.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- batching
def test_concurrent_requests_are_batched_and_answered_as_alone(pipe, world):
    h, t, x = world["analogy"]
    qs = [{"question": world["text_question"], "top_k": 3}, {"analogy": [h, t, x], "top_k": 3},
          {"question": world["question"], "image": b64(world["image"]), "top_k": 3},
          {"analogy": ["Nosuchthing", t, x]}] * 2
    alone = {}
    with TestClient(create_app(pipe, config=ServeConfig(max_batch=1))) as c:
        for i, q in enumerate(qs[:4]):
            alone[i] = c.post("/v1/answer", json=q).json()
    cfg = ServeConfig(max_batch=8, max_wait_ms=500)
    with TestClient(create_app(pipe, config=cfg)) as c:
        out = [None] * len(qs)

        def go(i):
            out[i] = c.post("/v1/answer", json=qs[i])
        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(qs))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        metrics = c.get("/metrics").text
    for i, r in enumerate(out):
        ref = alone[i % 4]
        if i % 4 == 3:  # the bad one gets its own error; its batch-mates are answered
            assert r.status_code == 422 and "Nosuchthing" in r.json()["error"]
            continue
        assert r.status_code == 200, r.text
        got = r.json()
        assert same_ranking([(c["id"], c["score"]) for c in got["candidates"]],
                            [(c["id"], c["score"]) for c in ref["candidates"]]), (got["candidates"], ref["candidates"])
        assert got["subgraph"]["triples"] == ref["subgraph"]["triples"]
    sizes = [line for line in metrics.splitlines() if line.startswith('mrmkg_batch_size_count{kind="answer"}')]
    assert sizes and float(sizes[0].split()[-1]) < len(qs)  # fewer Pipeline calls than requests


def test_same_ranking_allows_float_noise_and_tie_order_only():
    ref = [("a", 0.5), ("b", 0.25), ("c", 0.25), ("d", 0.1)]
    assert same_ranking([("a", 0.5000001), ("c", 0.25), ("b", 0.2500001), ("d", 0.1)], ref)
    assert same_ranking([("a", 0.5), ("b", 0.25), ("c", 0.25), ("e", 0.1)], ref)  # last: tied beyond k
    assert not same_ranking([("b", 0.5), ("a", 0.25), ("c", 0.25), ("d", 0.1)], ref)
    assert not same_ranking([("a", 0.51), ("b", 0.25), ("c", 0.25), ("d", 0.1)], ref)
    assert not same_ranking(ref[:3], ref)
    big = [("a", 8.0), ("b", 5.0)]  # above 1 the tolerance is relative: 1e-5 of the score
    assert same_ranking([("a", 8.00007), ("b", 4.99996)], big)
    assert not same_ranking([("a", 8.0001), ("b", 5.0)], big)


def test_micro_batcher_gathers_up_to_max_batch_and_isolates_errors():
    from concurrent.futures import ThreadPoolExecutor

    calls = []

    def fn(xs):
        calls.append(list(xs))
        return [ValueError(f"bad {x}") if x < 0 else x * 10 for x in xs]

    async def main(max_batch):
        ex = ThreadPoolExecutor(1)
        b = MicroBatcher(fn, ex, max_batch=max_batch, max_wait_ms=200)
        res = await asyncio.gather(*(b.submit(x) for x in (1, 2, -3, 4, 5)), return_exceptions=True)
        await b.stop()
        ex.shutdown()
        return res

    res = asyncio.run(main(8))
    assert res[:2] == [10, 20] and res[3:] == [40, 50] and str(res[2]) == "bad -3"
    assert calls == [[1, 2, -3, 4, 5]]
    calls.clear()
    asyncio.run(main(2))
    assert [len(c) for c in calls] == [2, 2, 1]
    calls.clear()
    asyncio.run(main(1))
    assert [len(c) for c in calls] == [1] * 5
