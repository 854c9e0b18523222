"""The Ray Tune side of profner-hpo: trainable, sweep runner, MLflow tracking, reports,
two-stage NAS (narrow) and refit. ``trainables.cli`` registers ``profner tune|refit|ui``."""
