"""The built-in demo world: its generator (``world``), its pictures (``drawing``) and its questions
as tasks (``task``: stage 2, and stage 1 over the world's facts)."""

TASKS = {"demo": "mrmkg.tasks.demo.task:DemoTask", "demo_stage1": "mrmkg.tasks.demo.task:DemoStage1Task"}
