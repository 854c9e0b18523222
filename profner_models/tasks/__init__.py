"""Tasks: the ``Task`` contract (``base``), ProfNER and MEDDOPROF, and their official scorers
(``metrics``). A task supplies its labels, targets, training units, resources, metrics and
predictions; everything above (training, artifacts, predict, unseen, cli) asks it.

Imports ``documents``, ``corpus``, ``text``, ``models`` and ``norm`` (never training, artifacts or
predict). Importing the package registers both tasks.
"""

from profner_models.tasks import meddoprof, profner  # noqa: F401  (they register)
from profner_models.tasks.base import DEFAULT_TASK, Task, data_config, task_of, tasks, validate

__all__ = ["DEFAULT_TASK", "Task", "data_config", "task_of", "tasks", "validate"]
