"""Loaders for the knowledge-graph formats of the field, one module each, all built on the validation
core of :mod:`mrmkg.kg.io` (``_GraphBuilder``, ``LoadOptions``, file:line ``InputError``\\ s):

* :mod:`~mrmkg.kg.formats.rdf`: N-Triples (``nt``) and Turtle (``ttl``) through rdflib.
* :mod:`~mrmkg.kg.formats.mmkb`: MMKB / MKGformer folders (FB15K-IMG, WN18-IMG): the paper's graph.
* :mod:`~mrmkg.kg.formats.openke`: OpenKE benchmark folders (``entity2id.txt``, ``train2id.txt``, ...).
* :mod:`~mrmkg.kg.formats.pykeen`: PyKEEN-style labelled triples (``head<TAB>relation<TAB>tail``).

:func:`mrmkg.kg.io.load_graph` dispatches to them (``mrmkg kg build --format ...``).
"""
