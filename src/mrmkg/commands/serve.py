"""`mrmkg serve CHECKPOINT`: the checkpoint's Pipeline over HTTP, with a web page at / that shows each
answer with its subgraph (:mod:`mrmkg.serve`, docs/serve.md)."""
from __future__ import annotations

import typer

from mrmkg.commands.options import Checkpoint, Device, Dtype, Quiet
from mrmkg.errors import InputError


def serve_command(
    checkpoint: Checkpoint,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only; "
                                                         "0.0.0.0 exposes the server to the network)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, max=1024,
                                  help="Most concurrent requests answered in one batch (1 = no micro-batching)."),
    max_wait_ms: float = typer.Option(15.0, "--max-wait-ms", min=0.0, max=10_000.0,
                                      help="How long a batch waits for more requests (ms)."),
    max_queue: int = typer.Option(256, "--max-queue", min=1, help="Waiting requests beyond this get 503."),
    # every float has a max: typer refuses nan through min, but lets inf (and 1e400) through without one
    timeout: float = typer.Option(30.0, "--timeout", min=0.001, max=86_400.0, help="Seconds before a request gets 504."),
    max_body_mb: float = typer.Option(10.0, "--max-body-mb", min=0.001, max=1024.0, help="Largest request body (MiB)."),
    max_image_megapixels: float = typer.Option(20.0, "--max-image-megapixels", min=0.001, max=1000.0,
                                               help="Largest picture, width x height (megapixels)."),
    max_question_chars: int = typer.Option(1000, "--max-question-chars", min=1, help="Longest question (characters)."),
    max_top_k: int = typer.Option(100, "--max-top-k", min=1, help="Largest top_k a client may ask for."),
    device: Device = "cpu",
    dtype: Dtype = None,
    quiet: Quiet = False,
) -> None:
    """Serve a checkpoint: POST /v1/answer and /v1/retrieve, GET /v1/entities, /v1/info, /healthz,
    /readyz, /metrics, the API's page at /docs and a web page at / (docs/serve.md). With --quiet: no access
    log, only warnings and errors."""
    import uvicorn

    from mrmkg.pipeline import resolve_checkpoint
    from mrmkg.serve import ServeConfig, create_app

    resolve_checkpoint(checkpoint)  # a wrong path fails here, before the port is taken (--device is checked by then)
    config = ServeConfig(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, timeout_s=timeout,
                         max_body_bytes=int(max_body_mb * 2**20), max_image_pixels=int(max_image_megapixels * 1e6),
                         max_question_chars=max_question_chars, max_top_k=max_top_k)
    failed: list[str] = []
    server: uvicorn.Server | None = None

    def stop(message: str) -> None:
        failed.append(message)
        server.should_exit = True

    app = create_app(checkpoint=str(checkpoint), device=device, dtype=dtype, config=config, on_load_error=stop)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning" if quiet else "info",
                                           access_log=not quiet, timeout_graceful_shutdown=5))
    if not quiet:
        typer.echo(f"serving {checkpoint} on http://{host}:{port}/ (loading the model; GET /readyz says when "
                   "it is ready; Ctrl+C stops)")
    server.run()
    if failed:
        raise InputError(f"could not serve the checkpoint: {failed[0]}")
