"""Questions of one's own about one's own graph: the data format (``data``) and the task (``task``)."""

TASKS = {"qa": "mrmkg.tasks.qa.task:QATask"}
