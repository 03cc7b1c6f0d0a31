"""N-Triples (``nt``) and Turtle (``ttl``) graphs, parsed by rdflib.

What becomes what:

* **Triples** are the statements whose subject, predicate and object are IRIs. Entities are their
  subjects and objects, relations their predicates, both in order of first appearance.
* **Ids** are prefixed names where the Turtle file declares a prefix for the IRI (``ex:Paris``), else
  the full IRI (``http://example.org/Paris``; always in N-Triples, which has no prefixes). Relative
  IRIs of a Turtle file stay relative (``<Paris>`` -> ``Paris``), so ids do not depend on where the
  file lies.
* **Names** come from ``rdfs:label`` (an untagged or English label first; among several, the
  alphabetically first, so the same file always gives the same name); without one, from the IRI's
  local name (``.../Bright_Star_(film)`` -> ``Bright Star (film)``; relations also split camel case:
  ``birthPlace`` -> ``birth place``). **Descriptions** from ``rdfs:comment`` or ``schema:description``.
* **Images** from ``schema:image`` or ``foaf:depiction`` statements whose object is a ``file:`` IRI,
  a relative IRI or a literal path (relative to the file's folder, which the path must not leave:
  :func:`mrmkg.fileio.contained_path`), or from an image list (``entity id<TAB>image path``, ids as
  above, paths relative to the list's folder). ``http(s)`` images cannot be fetched (no network at
  run time): they are skipped and counted (``skipped_remote_images``).
* **Skipped, and counted in** ``kg.meta["load"]``: statements with any other literal object
  (``skipped_literal_triples``: numbers, dates and strings are attributes, not edges between
  entities) and statements with a blank node (``skipped_blank_node_triples``: blank-node labels are
  not stable ids across files).

Errors name file and line: rdflib's parse errors (N-Triples is parsed line by line with rdflib's own
parser so every statement keeps its line; Turtle errors carry the line rdflib reports), unbound
prefixes, IRIs that are not absolute or contain a space or one of < > " { } | \\ ^ `, bytes that are not
UTF-8, and missing images. Turtle statements carry no line of their own after parsing, so a bad IRI
or image found after parsing is reported at the first line where its text appears.
"""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from mrmkg.errors import InputError
from mrmkg.kg.io import LoadOptions, _add_image_list, _GraphBuilder, _options, _read_lines, _read_text

RDFS = "http://www.w3.org/2000/01/rdf-schema#"
_SCHEMA = ("http://schema.org/", "https://schema.org/")
LABEL_PREDICATES = frozenset({RDFS + "label"})
DESCRIPTION_PREDICATES = frozenset({RDFS + "comment", *(s + "description" for s in _SCHEMA)})
IMAGE_PREDICATES = frozenset({"http://xmlns.com/foaf/0.1/depiction", *(s + "image" for s in _SCHEMA)})

_IRI_BAD_CHAR = re.compile(r'[\x00-\x20<>"{}|\\^`]')
_IRI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_PN_LOCAL = re.compile(r"^[\w\-.%]*[\w\-%]$")  # a local part that reads back as a prefixed name
_TOKEN = re.compile(r'<([^<>\n]*)>|"((?:[^"\\\n]|\\.)*)"')  # IRIs and short literals, for locating text


def iri_problem(iri: str) -> str | None:
    """Why ``iri`` is not an absolute IRI, or ``None``."""
    m = _IRI_BAD_CHAR.search(iri)
    if m:
        return f"contains {'a space' if m.group() == ' ' else repr(m.group())}, which IRIs may not contain"
    if not _IRI_SCHEME.match(iri):
        return "is not absolute (expected a scheme, e.g. http://example.org/x)"
    return None


def local_name(iri: str, relation: bool = False) -> str:
    """A readable name from an IRI's last segment: ``_`` as spaces, %-escapes decoded; relations also
    split camel case (``birthPlace`` -> ``birth place``)."""
    tail = re.split(r"[/#:]", iri.rstrip("/#"))[-1] or iri
    name = unquote(tail).replace("_", " ").strip()
    if relation:
        name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()
    return name or iri


class _Ids:
    """IRI -> id: a prefixed name where the file binds a prefix, relative to the file's folder where
    rdflib resolved a relative IRI against it, else the IRI itself."""

    def __init__(self, prefixes: dict[str, str], base_dir: str | None):
        self.prefixes = sorted(prefixes.items(), key=lambda kv: -len(kv[1]))
        self.base_dir = base_dir
        self.cache: dict[str, str] = {}

    def __call__(self, iri: str) -> str:
        out = self.cache.get(iri)
        if out is None:
            out = iri
            for prefix, ns in self.prefixes:
                if ns and iri.startswith(ns) and _PN_LOCAL.match(iri[len(ns):]):
                    out = f"{prefix}:{iri[len(ns):]}"
                    break
            else:
                if self.base_dir and iri.startswith(self.base_dir) and len(iri) > len(self.base_dir):
                    out = iri[len(self.base_dir):]
            self.cache[iri] = out
        return out


class _Locator:
    """First line on which a piece of text appears as an ``<IRI>`` or ``"literal"`` (Turtle)."""

    def __init__(self, text: str | None):
        self.text, self.first = text, None

    def __call__(self, *needles: str) -> int | None:
        if self.text is None:
            return None
        if self.first is None:
            self.first = {}
            for i, line in enumerate(self.text.split("\n"), 1):
                for m in _TOKEN.finditer(line):
                    self.first.setdefault(m.group(1) if m.group(1) is not None else m.group(2), i)
        return next((self.first[n] for n in needles if n in self.first), None)


@contextmanager
def _quiet_rdflib():
    """rdflib logs, with tracebacks, literals it cannot convert ("abc"^^xsd:integer) and IRIs it finds
    invalid; the loader skips the former and reports the latter itself, with file and line."""
    log = logging.getLogger("rdflib.term")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _parse_nt(path: Path) -> list[tuple]:
    """``(s, p, o, line)`` for every statement, parsed line by line by rdflib's N-Triples parser."""
    from rdflib.exceptions import ParserError
    from rdflib.plugins.parsers.ntriples import W3CNTriplesParser

    out: list[tuple] = []

    class Sink:
        line = 0

        def triple(self, s, p, o):
            out.append((s, p, o, self.line))

    sink = Sink()
    parser = W3CNTriplesParser(sink=sink)
    expected = "N-Triples statements: <subject IRI> <predicate IRI> <object IRI or \"literal\"> ."
    with _quiet_rdflib():
        for lineno, text in _read_lines(path, expected):
            sink.line, parser.line = lineno, text
            try:
                parser.parseline()
            except ParserError as e:
                bad = next((m.group(1) for m in _TOKEN.finditer(text)
                            if m.group(1) is not None and iri_problem(m.group(1))), None)
                why = f"IRI <{bad}> {iri_problem(bad)}" if bad is not None else f"rdflib: {e}"
                raise InputError(f"not a valid N-Triples statement ({why}); expected {expected}",
                                 path=path, line=lineno) from None
    return out


def _parse_ttl(path: Path) -> tuple[list[tuple], dict[str, str], str]:
    """``(s, p, o, None)`` statements, the prefixes the file binds, and its text."""
    import rdflib
    from rdflib.plugins.parsers.notation3 import BadSyntax

    text = _read_text(path, "Turtle")
    if not text.strip():
        raise InputError("file is empty (expected Turtle statements)", path=path)
    g = rdflib.Graph(bind_namespaces="none")
    try:
        with _quiet_rdflib():
            g.parse(data=text, format="turtle", publicID=path.resolve().as_uri())
    except BadSyntax as e:
        src, at = getattr(e, "_str", None), getattr(e, "_i", None)
        if isinstance(src, (bytes, str)) and isinstance(at, int):
            line = src[:at].count(b"\n" if isinstance(src, bytes) else "\n") + 1
        else:
            line = getattr(e, "lines", 0) + 1
        raise InputError(f"not valid Turtle: {getattr(e, '_why', e)}", path=path, line=line) from None
    except Exception as e:  # rdflib raises assorted errors (ValueError, AttributeError, ...) on bad input
        raise InputError(f"not valid Turtle: {type(e).__name__}: {e}", path=path, line=_parser_line(e)) from None
    prefixes = {p: str(ns) for p, ns in g.namespaces()}
    return [(s, p, o, None) for s, p, o in g], prefixes, text


def _parser_line(e: BaseException) -> int | None:
    """The line rdflib's Turtle parser had reached when ``e`` escaped it (its ``SinkParser.lines``
    counts the newlines it has passed), for the errors it does not wrap in ``BadSyntax``."""
    tb, line = e.__traceback__, None
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if type(obj).__name__ == "SinkParser" and isinstance(getattr(obj, "lines", None), int):
            line = obj.lines + 1
        tb = tb.tb_next
    return line


def _best(literals: list) -> str:
    """An untagged or English literal first; among equals, the alphabetically first."""
    rank = lambda lit: (0 if (lit.language or "en").lower().startswith("en") else 1, str(lit))  # noqa: E731
    return str(min(literals, key=rank)).strip()


def load_rdf(path: str | Path, format: str = "nt", images: str | Path | None = None,
             options: LoadOptions | None = None, **kw):
    """Load an N-Triples (``format="nt"``) or Turtle (``"ttl"``) file (see the module docstring).

    ``images``: optional ``entity id<TAB>image path`` list. Keywords are :class:`LoadOptions` fields.
    """
    from rdflib import BNode, Literal, URIRef

    opt = _options(options, kw)
    if format not in ("nt", "ttl"):
        raise InputError(f"format must be 'nt' or 'ttl', not {format!r}")
    path = Path(path)
    if format == "nt":
        statements, ids, locate = _parse_nt(path), _Ids({}, None), _Locator(None)
    else:
        statements, prefixes, text = _parse_ttl(path)
        ids, locate = _Ids(prefixes, path.resolve().parent.as_uri() + "/"), _Locator(text)
    b = _GraphBuilder(opt, format, str(path.resolve()))
    b.entities_from, b.relations_from = "any triple", "any triple"
    counts = {"skipped_literal_triples": 0, "skipped_blank_node_triples": 0, "skipped_remote_images": 0}
    labels: dict[str, list] = {}
    descriptions: dict[str, list] = {}
    lines, heads, rels, tails = [], [], [], []
    root = path.parent

    def check(term, line) -> str:
        iri = str(term)
        why = iri_problem(iri)
        if why is not None:
            raise InputError(f"IRI <{iri}> {why}", path=path, line=line if line is not None else locate(iri))
        return ids(iri)

    for s, p, o, line in statements:
        if isinstance(s, BNode) or isinstance(o, BNode) or not isinstance(p, URIRef):
            counts["skipped_blank_node_triples"] += 1
            continue
        pred = str(p)
        if isinstance(o, Literal) and pred in LABEL_PREDICATES:
            labels.setdefault(check(s, line), []).append(o)
        elif isinstance(o, Literal) and pred in DESCRIPTION_PREDICATES:
            descriptions.setdefault(check(s, line), []).append(o)
        elif pred in IMAGE_PREDICATES:
            eid, value = check(s, line), str(o)
            where = line if line is not None else locate(value, ids(value))
            if isinstance(o, Literal):
                b.add_image(eid, value, path, where, root)
                continue
            scheme = urlparse(value).scheme.lower()
            if scheme in ("http", "https"):
                counts["skipped_remote_images"] += 1
            elif scheme == "file":
                b.add_image(eid, url2pathname(urlparse(value).path), path, where, root)
            else:
                raise InputError(f"image <{value}> of {eid} is neither a file: IRI nor a relative path "
                                 "(images are read from disk)", path=path, line=where)
        elif isinstance(o, Literal):
            counts["skipped_literal_triples"] += 1
        else:
            lines.append(line if line is not None else 0)  # Turtle: a set of statements, no lines
            heads.append(check(s, line))
            rels.append(check(p, line))
            tails.append(check(o, line))
    b.add_triples(path, lines, heads, rels, tails)
    iri_of = {v: k for k, v in ids.cache.items()}
    b.define_from_triples(
        lambda e: _best(labels[e]) if e in labels else local_name(iri_of.get(e, e)),
        lambda r: _best(labels[r]) if r in labels else local_name(iri_of.get(r, r), relation=True))
    for eid, lits in descriptions.items():
        if eid in b.eidx:
            b.ent_desc[b.eidx[eid]] = _best(lits)
    if images is not None:
        _add_image_list(b, images)
    b.report.update(counts)
    b.report["labelled_entities"] = sum(1 for e in labels if e in b.eidx)
    return b.build()
