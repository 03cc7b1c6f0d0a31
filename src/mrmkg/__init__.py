"""mrmkg: multimodal reasoning with a multimodal knowledge graph (MR-MKG) on a frozen language model.

``from mrmkg import Pipeline``: a trained checkpoint that answers questions with the subgraph behind
each answer (:mod:`mrmkg.pipeline`). Importing the package stays light: torch and the models load
when a pipeline is built.
"""
from mrmkg.pipeline import Answer, Candidate, Pipeline, Query

__all__ = ["Pipeline", "Answer", "Candidate", "Query"]
