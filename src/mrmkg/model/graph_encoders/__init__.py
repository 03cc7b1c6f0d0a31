"""Graph encoders by name: ``MRMKGConfig.graph_encoder`` picks one from :data:`GRAPH_ENCODERS`.

Each encoder is one file of this package that subclasses :class:`~mrmkg.model.graph_encoders.base.GraphEncoder`
and registers itself::

    @register_graph_encoder("rgat")
    class RGATEncoder(GraphEncoder): ...

Built in (paper Table 7): ``rgat`` (the paper's), ``gat``, ``gcn``, ``none``. Every module of the
package's ``__path__`` is imported the first time the names are needed (:func:`graph_encoder_names`),
so a new encoder is a new file here -- or in a folder appended to ``__path__`` (the tests' toy encoder).
This module stays free of torch; the encoders import it, it never imports them at import time.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from mrmkg.model.graph_encoders.base import GraphEncoder

#: ``MRMKGConfig.graph_encoder`` name -> encoder class; filled by :func:`register_graph_encoder`
GRAPH_ENCODERS: dict[str, type[GraphEncoder]] = {}


def register_graph_encoder(name: str) -> Callable[[type[GraphEncoder]], type[GraphEncoder]]:
    """Class decorator: make ``cls`` the encoder that ``MRMKGConfig(graph_encoder=name)`` builds."""
    def add(cls: type[GraphEncoder]) -> type[GraphEncoder]:
        if GRAPH_ENCODERS.get(name, cls) is not cls:
            raise ValueError(f"graph encoder {name!r} is already registered ({GRAPH_ENCODERS[name].__qualname__})")
        GRAPH_ENCODERS[name] = cls
        cls.name = name
        return cls
    return add


def _import_all() -> None:
    """Import every module of this package (each registers its encoder); already imported ones are skipped."""
    for info in pkgutil.iter_modules(__path__):
        if f"{__name__}.{info.name}" not in sys.modules:
            importlib.import_module(f"{__name__}.{info.name}")


def graph_encoder_names() -> tuple[str, ...]:
    """The registered names, sorted."""
    _import_all()
    return tuple(sorted(GRAPH_ENCODERS))


def graph_encoder_class(name: str) -> type[GraphEncoder]:
    """The encoder class registered as ``name`` (``KeyError`` listing the names when there is none)."""
    if name not in GRAPH_ENCODERS:
        _import_all()
    if name not in GRAPH_ENCODERS:
        raise KeyError(f"no graph encoder {name!r}; registered: {list(graph_encoder_names())}")
    return GRAPH_ENCODERS[name]


__all__ = ["GRAPH_ENCODERS", "graph_encoder_class", "graph_encoder_names", "register_graph_encoder"]
