"""The FastAPI app around one :class:`~mrmkg.pipeline.Pipeline` (docs/serve.md).

The server is a thin layer: a request is checked (size, picture, lengths, ranges), turned into a
:class:`~mrmkg.pipeline.Query` and handed to a :class:`~mrmkg.serve.batching.MicroBatcher`, which
answers concurrent requests with one ``Pipeline.batch`` call on a worker thread. Everything the
client can get wrong comes back as a 4xx JSON ``{"status", "error", "field"}`` whose ``error``
says what to change; an unexpected failure is logged here and answered 500 with no traceback.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import logging
import math
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Query as QueryParam, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mrmkg.errors import InputError
from mrmkg.serve import models as M
from mrmkg.serve.batching import MicroBatcher, QueueFull
from mrmkg.serve.config import ServeConfig
from mrmkg.serve.metrics import Metrics

log = logging.getLogger("mrmkg.serve")
STATIC = Path(__file__).parent / "static"

#: what each task's questions can carry (a hint for the page; the Pipeline decides and says no otherwise)
INPUT_FORMS = {"demo": ("question", "image", "analogy"), "demo_stage1": ("question", "image", "analogy"),
               "mars": ("analogy",), "stage1": ("question", "image"),
               "scienceqa": ("question", "image", "choices", "context")}
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")


class ApiError(Exception):
    """A request the client should change: HTTP ``status`` with ``message`` (and the ``field``)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class BodyTooLarge(Exception):
    pass


def error_response(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"status": status, "error": message, "field": field}, status_code=status)


def _finite(x):
    """JSON-safe copy: non-finite floats (-inf scores outside a candidate set) become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):  # numpy scalars
        return _finite(x.item())
    return x


class SafeJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(_finite(content), ensure_ascii=False, allow_nan=False, default=str).encode("utf-8")


# ---------------------------------------------------------------------------------------------- pictures
def check_image(data: bytes, max_pixels: int) -> str:
    """The picture's format; ApiError unless ``data`` is a complete picture of at most ``max_pixels``.
    The size is read from the header first, so a decompression bomb is refused before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ApiError(400, "the image is empty: send a PNG or JPEG file", "image")
    try:
        with warnings.catch_warnings():  # PIL warns above 89 MP; the limit below decides, with its own message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise ApiError(413, f"the image is {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is "
                                    f"{max_pixels / 1e6:g} megapixels: send a smaller picture", "image")
            if im.format not in IMAGE_FORMATS:
                raise ApiError(415, f"image format {im.format} is not accepted; send one of {', '.join(IMAGE_FORMATS)}",
                               "image")
            im.load()  # decodes fully: a truncated or corrupt file fails here, not in the model
            return im.format
    except ApiError:
        raise
    except Image.DecompressionBombError as e:
        raise ApiError(413, f"the image is too large to decode safely ({e}): send a smaller picture", "image") from None
    except UnidentifiedImageError:
        raise ApiError(400, "the image is not a picture that can be read: send a PNG or JPEG file", "image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ApiError(400, f"the image could not be decoded ({e}): send a complete PNG or JPEG file", "image") from None


class Uploads:
    """Uploaded pictures as files named by their content (the Pipeline, like `mrmkg ask`, reads a
    path; the embedding cache keys on path and content), removed when no request uses them."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="mrmkg-serve-")
        self._users: dict[Path, int] = {}
        self._lock = threading.Lock()

    def acquire(self, data: bytes, fmt: str) -> Path:
        path = Path(self._dir.name) / f"{hashlib.sha256(data).hexdigest()}.{fmt.lower()}"
        with self._lock:
            if self._users.get(path, 0) == 0:
                path.write_bytes(data)
            self._users[path] = self._users.get(path, 0) + 1
        return path

    def release(self, path: Path) -> None:
        with self._lock:
            self._users[path] -= 1
            if self._users[path] == 0:
                del self._users[path]
                path.unlink(missing_ok=True)

    def close(self) -> None:
        self._dir.cleanup()


# ---------------------------------------------------------------------------------------------- the service
class Service:
    """The pipeline, its batchers and the graph lookups the endpoints need."""

    def __init__(self, config: ServeConfig, metrics: Metrics):
        self.config, self.metrics = config, metrics
        self.pipe = None
        self.load_error: str | None = None
        self.checkpoint: str | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mrmkg-model")
        self.uploads = Uploads()
        self._thumbs: dict[int, bytes] = {}
        self._image_index: dict[str, int] = {}
        cb = self.metrics.observe_batch
        self.answers = MicroBatcher(self._answer_batch, self.executor, config.max_batch, config.max_wait_ms,
                                    config.max_queue, on_batch=lambda n, s: cb("answer", n, s))
        self.retrievals = MicroBatcher(self._retrieve_batch, self.executor, config.max_batch, config.max_wait_ms,
                                       config.max_queue, on_batch=lambda n, s: cb("retrieve", n, s))

    # -- loading
    def set_pipeline(self, pipe) -> None:
        kg = getattr(pipe.task, "kg", None)
        self._image_index = {p: i for i, p in enumerate(getattr(kg, "image_paths", []) or [])}
        self.pipe = pipe
        self.checkpoint = pipe.checkpoint
        self.metrics.ready.set(1)

    def load(self, checkpoint: str, device: str, dtype: str | None = None) -> None:
        from mrmkg.pipeline import Pipeline

        try:
            self.set_pipeline(Pipeline.from_pretrained(checkpoint, device=device, dtype=dtype).warm_up())
        except InputError as e:  # a bad checkpoint: the message says it all, a traceback would bury it
            self.load_error = str(e)
            log.error("could not load %s: %s", checkpoint, e)
        except Exception as e:  # a bug: keep its traceback. Both are reported by /readyz and `mrmkg serve`
            self.load_error = f"{type(e).__name__}: {e}"
            log.exception("could not load %s", checkpoint)

    def require(self):
        if self.pipe is None:
            if self.load_error:
                raise ApiError(503, f"the model failed to load: {self.load_error}")
            raise ApiError(503, "the model is still loading: retry when GET /readyz answers 200")
        return self.pipe

    # -- work run on the model thread
    def _dress(self, d: dict) -> dict:
        sg = d.get("subgraph")
        if sg:
            for node in sg.get("nodes", []):
                if node.get("kind") == "image" and node.get("image") in self._image_index:
                    node["image_url"] = f"/v1/images/{self._image_index[node['image']]}"
        return d

    def _isolate(self, run: Callable[[list], list], payloads: list) -> list:
        """``run(payloads)``; when it raises InputError for a batch, each payload alone, so only the bad
        one gets its error."""
        try:
            return run(payloads)
        except InputError as e:
            if len(payloads) == 1:
                return [e]
        except Exception as e:
            log.exception("batch of %d failed", len(payloads))
            return [e] * len(payloads)
        out = []
        for p in payloads:
            out += self._isolate(run, [p])
        return out

    def _answer_batch(self, payloads: list) -> list:
        pipe = self.pipe
        out: list = [None] * len(payloads)
        for k in sorted({p[1] for p in payloads}):  # one Pipeline.batch per top_k asked
            idx = [i for i, p in enumerate(payloads) if p[1] == k]

            def run(ps, k=k):
                return [self._dress(a.to_dict()) for a in pipe.batch([p[0] for p in ps], top_k=k,
                                                                      batch_size=max(len(ps), 1))]
            for i, r in zip(idx, self._isolate(run, [payloads[i] for i in idx])):
                out[i] = r
        return out

    def _retrieve_batch(self, payloads: list) -> list:
        pipe = self.pipe

        def run(ps):
            return [self._dress({"subgraph": a.subgraph, "timings": a.timings, "meta": a.meta})
                    for a in pipe.retrieve(list(ps))]
        return self._isolate(run, list(payloads))

    # -- graph lookups
    def search_entities(self, q: str, limit: int) -> dict:
        kg = getattr(self.require().task, "kg", None)
        if kg is None:
            return {"query": q, "entities": [], "total": 0}
        key = q.strip().casefold()
        first, then = [], []
        for i, (eid, name) in enumerate(zip(kg.entity_ids, kg.entity_names)):
            n, e = name.casefold(), eid.casefold()
            if not key or n.startswith(key) or e == key:
                first.append(i)
            elif key in n or key in e:
                then.append(i)
        hits = first + then
        return {"query": q, "total": len(hits),
                "entities": [{"id": kg.entity_ids[i], "name": kg.entity_names[i], "images": int(kg.images_of(i).size)}
                             for i in hits[:limit]]}

    def thumbnail(self, index: int) -> bytes:
        """A PNG of at most 256 px of the graph's picture ``index`` (only the graph's own files)."""
        kg = getattr(self.require().task, "kg", None)
        paths = getattr(kg, "image_paths", None) or []
        if not 0 <= index < len(paths):
            raise ApiError(404, f"no image {index}: the graph has {len(paths)} images (ids 0..{len(paths) - 1})")
        if index not in self._thumbs:
            from PIL import Image

            path = Path(paths[index])
            if not path.is_file():
                raise ApiError(404, f"image {index} has no file on this server (a text stand-in)")
            with Image.open(path) as im:
                im = im.convert("RGB")
                im.thumbnail((256, 256))
                buf = io.BytesIO()
                im.save(buf, format="PNG")
            if len(self._thumbs) > 4096:
                self._thumbs.clear()
            self._thumbs[index] = buf.getvalue()
        return self._thumbs[index]

    def info(self) -> dict:
        pipe = self.require()
        task, tc = pipe.task, pipe.train_config
        kg = getattr(task, "kg", None)
        retr = getattr(task, "retriever", None)
        model_args = getattr(tc, "model", None) or {}
        enc = {}
        for kind in ("text_encoder", "vision_encoder"):
            try:
                enc[kind] = getattr(getattr(retr, kind, None), "name", None)
            except Exception:  # a lazily loaded encoder that fails to load is not the info page's problem
                enc[kind] = None
        graph = None if kg is None else {"entities": len(kg.entity_ids), "relations": len(kg.relation_ids),
                                         "triples": int(len(kg.triples)), "images": len(kg.image_paths)}
        c = self.config
        return {"checkpoint": pipe.checkpoint, "task": task.name, "output": pipe.kind,
                "inputs": list(INPUT_FORMS.get(task.name, ("question", "image"))),
                "llm": model_args.get("llm") if isinstance(model_args, dict) else None, **enc,
                "device": str(getattr(pipe.model, "device", "cpu")), "graph": graph,
                "limits": {"max_body_bytes": c.max_body_bytes, "max_image_pixels": c.max_image_pixels,
                           "max_question_chars": c.max_question_chars, "max_top_k": c.max_top_k,
                           "max_choices": c.max_choices, "timeout_s": c.timeout_s},
                "batching": {"max_batch": c.max_batch, "max_wait_ms": c.max_wait_ms, "max_queue": c.max_queue}}

    # -- requests -> queries
    def query(self, req: M.AnswerRequest, image: Path | None):
        from mrmkg.commands.ask import parse_analogy, parse_choices
        from mrmkg.pipeline import Query

        c = self.config
        for name in ("question", "context"):
            if len(getattr(req, name)) > c.max_question_chars:
                raise ApiError(422, f"{name} is {len(getattr(req, name))} characters; the limit is "
                                    f"{c.max_question_chars}: shorten it", name)
        if not 1 <= req.top_k <= c.max_top_k:
            raise ApiError(422, f"top_k must be between 1 and {c.max_top_k}, got {req.top_k}", "top_k")
        analogy = req.analogy
        if isinstance(analogy, str):
            try:
                analogy = parse_analogy(analogy)
            except InputError as e:
                raise ApiError(422, str(e).replace("--analogy", "analogy"), "analogy") from None
        elif analogy is not None:
            if len(analogy) != 3 or not all(isinstance(s, str) and s.strip() and len(s) <= 200 for s in analogy):
                raise ApiError(422, "analogy must be three non-empty entity names or ids [head, tail, question] "
                                    "(or 'head : tail :: question : ?')", "analogy")
            analogy = tuple(s.strip() for s in analogy)
        choices = req.choices
        if isinstance(choices, str):
            try:
                choices = parse_choices(choices)
            except InputError as e:
                raise ApiError(422, str(e).replace("--choices", "choices"), "choices") from None
        elif choices is not None:
            if not 2 <= len(choices) <= c.max_choices or not all(s.strip() and len(s) <= 500 for s in choices):
                raise ApiError(422, f"choices must be 2 to {c.max_choices} non-empty options", "choices")
        if not req.question.strip() and analogy is None:
            raise ApiError(422, "the question is empty: write a question (or give an analogy for analogy checkpoints)",
                           "question")
        return Query(req.question, None if image is None else str(image), choices, analogy, req.context)


def _validation_message(e: ValidationError | RequestValidationError) -> tuple[str, str | None]:
    errs = e.errors()
    if not errs:
        return "the request is malformed", None
    first = errs[0]
    loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path")]
    field = ".".join(loc) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return f"the body is not valid JSON ({first.get('ctx', {}).get('error', first.get('msg'))})", None
    if kind == "extra_forbidden":
        return (f"unknown field {field!r}: the fields are {', '.join(M.AnswerRequest.model_fields)}", field)
    if kind == "model_type" or (kind.endswith("_type") and not loc):
        return "the body must be a JSON object such as {\"question\": \"...\"}", None
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{field or 'request'}: {first.get('msg')}{more}", field


async def _read_request(request: Request, service: Service) -> tuple[M.AnswerRequest, bytes | None]:
    """The question (JSON, or multipart form fields) and the picture's bytes."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        raw = await request.body()
        try:
            req = M.AnswerRequest.model_validate_json(raw or b"null", strict=True)
        except ValidationError as e:
            raise ApiError(422, *_validation_message(e)) from None
        data = None
        if req.image:
            b64 = req.image.split(",", 1)[1] if req.image.startswith("data:") else req.image
            try:
                data = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "image is not valid base64: send the file's bytes base64-encoded (or a data: URL)",
                               "image") from None
        return req.model_copy(update={"image": None}), data
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=1, max_fields=16)
        except BodyTooLarge:
            raise
        except Exception as e:  # malformed multipart, too many files/fields
            raise ApiError(400, f"the multipart form could not be read ({e})") from None
        fields: dict[str, Any] = {}
        data = None
        for key, value in form.multi_items():
            if key == "image":
                if isinstance(value, str):
                    raise ApiError(400, "image must be a file upload (a form field of type file)", "image")
                data = await value.read()
                if not data and not value.filename:  # a form's file field left empty: no picture
                    data = None
            elif key not in M.AnswerRequest.model_fields:
                raise ApiError(422, f"unknown field {key!r}: the fields are {', '.join(M.AnswerRequest.model_fields)}", key)
            elif not isinstance(value, str):
                raise ApiError(422, f"{key} must be a text field, not a file", key)
            elif key == "top_k":
                try:
                    fields[key] = int(value)
                except ValueError:
                    raise ApiError(422, f"top_k must be an integer, got {value[:40]!r}", "top_k") from None
            elif key in ("choices", "analogy"):
                fields[key] = value if value.strip() else None
            else:
                fields[key] = value
        await form.close()
        try:
            return M.AnswerRequest.model_validate(fields), data
        except ValidationError as e:
            raise ApiError(422, *_validation_message(e)) from None
    raise ApiError(415, f"content type {ctype or 'none'!r} is not accepted: send application/json (image base64) "
                        "or multipart/form-data (image as a file; or a url-encoded form without one)")


# ---------------------------------------------------------------------------------------------- the app
def create_app(pipeline=None, checkpoint: str | None = None, device: str = "cpu",
               config: ServeConfig | None = None, on_load_error: Callable[[str], None] | None = None,
               dtype: str | None = None) -> FastAPI:
    """The app serving ``pipeline`` (a loaded :class:`~mrmkg.pipeline.Pipeline`), or ``checkpoint``
    loaded on ``device`` (its frozen LLM in ``dtype``) in the background at start-up (``/readyz`` says when it is loaded;
    ``on_load_error(message)`` is called if it cannot be)."""
    config = config or ServeConfig()
    metrics = Metrics()
    service = Service(config, metrics)
    if pipeline is not None:
        service.set_pipeline(pipeline)

    async def lifespan(app: FastAPI):
        loader = None
        if service.pipe is None and checkpoint is not None:
            loader = asyncio.get_running_loop().run_in_executor(service.executor, service.load, checkpoint, device, dtype)
            if on_load_error is not None:
                loader.add_done_callback(lambda _: service.load_error and on_load_error(service.load_error))
        app.state.loader = loader
        yield
        await service.answers.stop()
        await service.retrievals.stop()
        service.executor.shutdown(wait=False, cancel_futures=True)
        service.uploads.close()

    app = FastAPI(title="mrmkg serve", lifespan=lifespan, default_response_class=SafeJSON,
                  description="Answers questions with a trained mrmkg checkpoint, with the subgraph behind each "
                              "answer. Errors are JSON {status, error, field}; `error` says what to change.")
    app.state.service = service
    app.state.metrics = metrics
    app.add_middleware(_Guard, metrics=metrics, max_body=config.max_body_bytes)

    errors = {s: {"model": M.ErrorResponse} for s in (400, 413, 415, 422, 503, 504)}

    @app.exception_handler(ApiError)
    async def _api_error(request, e: ApiError):
        return error_response(e.status, e.message, e.field)

    @app.exception_handler(InputError)
    async def _input_error(request, e: InputError):
        return error_response(400, str(e))

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request, e):
        return error_response(413, f"the request body is larger than {config.max_body_bytes} bytes: send a smaller "
                                   "picture or question")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        return error_response(422, *_validation_message(e))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, e: StarletteHTTPException):
        msg = {404: f"no such page: {request.url.path} (the API is listed at /docs)",
               405: f"{request.method} is not allowed on {request.url.path} (see /docs)"}.get(e.status_code, str(e.detail))
        return error_response(e.status_code, msg)

    @app.exception_handler(Exception)
    async def _internal(request, e: Exception):
        log.exception("internal error on %s", request.url.path)
        return error_response(500, "internal error (logged on the server); the request may be retried")

    async def _run(batcher: MicroBatcher, payload, release: Path | None = None) -> dict:
        t0 = time.perf_counter()
        try:
            result = await asyncio.wait_for(batcher.submit(payload), config.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, f"no answer within {config.timeout_s:g} s (the server is busy); retry later") from None
        except QueueFull as e:
            raise ApiError(503, f"the server is busy ({e}); retry later") from None
        except InputError as e:  # the Pipeline refused the question: its message says why
            raise ApiError(422, str(e)) from None
        finally:
            if release is not None:
                service.uploads.release(release)
        out = dict(result)
        timings = dict(out.get("timings") or {})
        timings["total"] = time.perf_counter() - t0
        out["timings"] = timings
        return out

    async def _query(request: Request):
        service.require()
        req, data = await _read_request(request, service)
        path = None
        if data is not None:
            fmt = await asyncio.to_thread(check_image, data, config.max_image_pixels)
            path = service.uploads.acquire(data, fmt)
        try:
            q = service.query(req, path)
        except Exception:
            if path is not None:
                service.uploads.release(path)
            raise
        return q, req.top_k, path

    body_doc = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": M.AnswerRequest.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "question": {"type": "string"}, "image": {"type": "string", "format": "binary"},
            "choices": {"type": "string", "description": "options separated by '|'"},
            "analogy": {"type": "string", "description": "head : tail :: question : ?"},
            "context": {"type": "string"}, "top_k": {"type": "integer", "default": 5}}}}}}}

    @app.post("/v1/answer", response_model=M.AnswerResponse, responses=errors, openapi_extra=body_doc,
              summary="Answer a question (JSON with a base64 picture, or a multipart upload)")
    async def answer(request: Request):
        q, top_k, path = await _query(request)
        return SafeJSON(await _run(service.answers, (q, top_k), path))

    @app.post("/v1/retrieve", response_model=M.RetrieveResponse, responses=errors, openapi_extra=body_doc,
              summary="The subgraph a question retrieves, without running the model")
    async def retrieve(request: Request):
        q, _, path = await _query(request)
        return SafeJSON(await _run(service.retrievals, q, path))

    @app.get("/v1/entities", response_model=M.EntitiesResponse, responses=errors,
             summary="Entities whose name starts with (then contains) q: for analogies and autocompletion")
    async def entities(q: str = QueryParam("", max_length=200), limit: int = QueryParam(10, ge=1, le=100)):
        return SafeJSON(service.search_entities(q, limit))

    @app.get("/v1/images/{index}", responses={404: {"model": M.ErrorResponse}}, response_class=Response,
             summary="A thumbnail of the graph's picture `index` (image nodes' image_url)")
    async def image(index: int):
        data = await asyncio.to_thread(service.thumbnail, index)
        return Response(data, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/v1/info", summary="Checkpoint, task, models, graph size, limits")
    async def info():
        return SafeJSON(service.info())

    @app.get("/healthz", summary="The process is up")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded (503 until then)")
    async def readyz():
        if service.pipe is None:
            msg = f"the model failed to load: {service.load_error}" if service.load_error else "loading the model"
            return error_response(503, msg)
        return {"status": "ready", "checkpoint": service.checkpoint}

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics")
    async def prometheus():
        body, ctype = metrics.render(queues={"answer": service.answers.depth, "retrieve": service.retrievals.depth})
        return Response(body, media_type=ctype)

    @app.get("/", response_class=FileResponse, include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class _Guard:
    """ASGI middleware: refuses bodies over ``max_body`` (413, by Content-Length or while reading) and
    records every request's status and latency (per route, so unknown paths do not add series)."""

    def __init__(self, app, metrics: Metrics, max_body: int):
        self.app, self.metrics, self.max_body = app, metrics, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                resp = error_response(413, f"the request body is larger than {self.max_body} bytes: send a smaller "
                                           "picture or question")
                return await resp(scope, receive, send_status)
            seen = [0]

            async def receive_limited():
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > self.max_body:
                        raise BodyTooLarge()
                return message

            await self.app(scope, receive_limited, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("/static" if scope["path"].startswith("/static/") else "other")
            self.metrics.observe_request(path, scope.get("method", ""), status[0], time.perf_counter() - t0)
