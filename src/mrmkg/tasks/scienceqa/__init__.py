"""ScienceQA with Multimodal-CoT prompting: the data and prompts (``data``), the official scorer
(``score``) and the task (``task``)."""

TASKS = {"scienceqa": "mrmkg.tasks.scienceqa.task:ScienceQATask"}
