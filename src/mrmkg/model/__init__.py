"""The MR-MKG model: graph encoder, adapters, alignment loss and entity head on a frozen LLM.

Layout: ``mrmkg.py`` the model (encode -> forward / rank / generate, save / load); ``config.py`` its
options; ``parts.py`` the trainable parts a config builds; ``graph_encoders/`` one file per encoder,
by name; ``adapters.py``, ``alignment.py``, ``entity_head.py``, ``packing.py`` the pieces;
``score_hook.py`` the hook through which ``extensions/`` (the MARS graph pointer) re-rank candidates;
``batch.py`` examples and their collate; ``features.py`` the frozen KG embeddings; ``params.py``
parameter accounting.
"""
from mrmkg.model.batch import MRMKGBatch, MRMKGExample, collate
from mrmkg.model.config import MRMKGConfig
from mrmkg.model.extensions.pointer_config import PointerConfig
from mrmkg.model.features import KGFeatures
from mrmkg.model.mrmkg import MRMKG, Encoded, MRMKGOutput
from mrmkg.model.params import count_trainable_parameters, parameter_report

__all__ = ["MRMKG", "Encoded", "MRMKGBatch", "MRMKGConfig", "MRMKGExample", "MRMKGOutput", "KGFeatures",
           "PointerConfig", "collate", "count_trainable_parameters", "parameter_report"]
