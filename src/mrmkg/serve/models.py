"""The API's request and response shapes (pydantic): what /docs shows and what requests are checked against."""
from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class AnswerRequest(BaseModel):
    """A question, as JSON (the picture base64-encoded) or as multipart form fields (the picture a file)."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field("", description="The question; may be empty for an analogy.",
                          examples=["What does this creature eat?"])
    image: Optional[str] = Field(None, description="A picture (PNG, JPEG, ...) as base64, or a data: URL.")
    choices: Optional[Union[list[str], str]] = Field(None, description="Multiple-choice options: a list, or one string "
                                                                       "separated by '|'.")
    analogy: Optional[Union[list[str], str]] = Field(None, description="[head, tail, question] entity names or ids, or "
                                                                       "'head : tail :: question : ?'.")
    context: str = Field("", description="Extra context text (ScienceQA's hint).")
    top_k: int = Field(5, description="How many scored candidates to return (1 .. the server's max_top_k).")


class Candidate(BaseModel):
    id: str
    name: str
    score: Optional[float] = Field(None, description="null: outside the question's candidate set (-inf).")


class Node(BaseModel):
    kind: str = Field(description="entity or image")
    id: Optional[str] = None
    name: Optional[str] = None
    image: Optional[str] = Field(None, description="image nodes: the graph's file")
    of: Optional[str] = Field(None, description="image nodes: the entity the picture shows")
    image_url: Optional[str] = Field(None, description="image nodes: a thumbnail served by this server")


class Edge(BaseModel):
    source: int = Field(description="index into nodes")
    target: int
    relation: str
    relation_name: str
    triple: int = Field(description="triple id; -1: 'image of', -2: analogy memory edge")
    score: float = Field(description="retrieval score")


class Triple(BaseModel):
    id: int
    head: str
    head_name: str
    relation: str
    relation_name: str
    tail: str
    tail_name: str
    score: float


class Subgraph(BaseModel):
    query: Any = None
    seeds: list[str] = []
    nodes: list[Node] = []
    edges: list[Edge] = []
    triples: list[Triple] = []
    example: list[str] = []
    memory: list[dict] = []


class AnswerResponse(BaseModel):
    answer: str
    answer_id: Optional[str] = None
    candidates: list[Candidate] = []
    text: Optional[str] = None
    gold: Optional[str] = None
    rank: Optional[int] = None
    correct: Optional[bool] = None
    subgraph: Optional[Subgraph] = None
    timings: dict[str, float] = Field(description="seconds per stage: encode, retrieve, model, queue, total")
    meta: dict = {}


class RetrieveResponse(BaseModel):
    subgraph: Optional[Subgraph] = None
    timings: dict[str, float]
    meta: dict = {}


class Entity(BaseModel):
    id: str
    name: str
    images: int = Field(description="pictures of it in the graph")


class EntitiesResponse(BaseModel):
    query: str
    entities: list[Entity]
    total: int = Field(description="matches before the limit")


class ErrorResponse(BaseModel):
    status: int
    error: str = Field(description="what went wrong and what to change")
    field: Optional[str] = None
