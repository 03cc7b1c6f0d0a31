"""Stage 1 of MR-MKG (paper A.3): question -> answer over an MMKG. Builders of the training records
(``vg``: Visual Genome scene graphs; ``data``: QA generated from any MMKG) and the task (``task``)."""

TASKS = {"stage1": "mrmkg.tasks.kgqa.task:Stage1Task"}
