"""MARS (multimodal analogical reasoning over MarKG, stage 2) and MarKG entity/relation prediction
(its stage 1): data files (``data``), the tasks (``task``, ``markg``)."""

TASKS = {"mars": "mrmkg.tasks.mars.task:MarsTask", "markg": "mrmkg.tasks.mars.markg:MarKGPretrainTask"}
