"""Optional parts of the model beyond the paper, each with its own config section of ``MRMKGConfig``
and reaching the core model through one hook (:mod:`mrmkg.model.score_hook`).

* the graph pointer (``model.pointer``, :mod:`~mrmkg.model.extensions.pointer`): candidates that are
  nodes of the retrieved subgraph are also scored from their node (MARS).

The MARS analogy memory and copy node are subgraph data (``mrmkg.kg.subgraph``: ``with_memory``,
``with_example``) that the MARS task builds; the model sees them only as node / edge columns of the
batched graphs (``node_focus``, ``edge_memory``, ``node_copy``), which only the pointer's features read.
"""
