"""`mrmkg serve`: a checkpoint's :class:`~mrmkg.pipeline.Pipeline` over HTTP (FastAPI), with a web page
that shows each answer with the subgraph behind it. :func:`create_app` builds the app;
:class:`ServeConfig` holds its limits and batching settings (docs/serve.md)."""
from mrmkg.serve.app import create_app
from mrmkg.serve.config import ServeConfig

__all__ = ["create_app", "ServeConfig"]
