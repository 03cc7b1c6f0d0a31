"""The MR-MKG model: graph encoder, adapters, alignment loss and entity head on a frozen LLM."""
from mrmkg.model.batch import MRMKGBatch, MRMKGExample, collate
from mrmkg.model.config import MRMKGConfig
from mrmkg.model.features import KGFeatures
from mrmkg.model.mrmkg import MRMKG, MRMKGOutput
from mrmkg.model.params import count_trainable_parameters, parameter_report

__all__ = ["MRMKG", "MRMKGBatch", "MRMKGConfig", "MRMKGExample", "MRMKGOutput", "KGFeatures", "collate",
           "count_trainable_parameters", "parameter_report"]
