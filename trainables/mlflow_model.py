"""A profner model dir as an MLflow Model: the ``pyfunc`` flavour, logged "from code".

MLflow imports this file to rebuild the model (``mlflow.models.set_model`` at the bottom), so
nothing is pickled: the logged model holds this code, the profner model dir as an artifact
(``artifacts/model_dir``), a signature and an input example. Then::

    mlflow.pyfunc.load_model("models:/profner-rnn_narrow/1").predict(pd.DataFrame({"text": [...]}))
    mlflow models serve -m models:/profner-rnn_narrow/1 --env-manager local
    profner serve models:/profner-rnn_narrow/1        # reads artifacts/model_dir directly

Input: a DataFrame with a ``text`` column (or a list of strings); output: a DataFrame with
``label``, ``probability`` and ``entities`` (a JSON list of ``{start, end, type, text}``, plus
``class`` and ``code`` for MEDDOPROF), one row per text.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import pandas as pd

from profner_models.predict import Predictor

MODEL_DIR = "model_dir"  # the artifact key (and folder) of the profner model dir


class ProfnerModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.predictor = Predictor(context.artifacts[MODEL_DIR])

    def predict(self, context, model_input: Any, params: dict | None = None) -> pd.DataFrame:
        texts = (list(model_input["text"]) if isinstance(model_input, pd.DataFrame)
                 else list(model_input))
        return to_frame([p.to_dict() for p in self.predictor.predict([str(t) for t in texts])])


def to_frame(predictions: list[dict]) -> pd.DataFrame:
    return pd.DataFrame({"label": [p["label"] for p in predictions],
                         "probability": [p["probability"] for p in predictions],
                         "entities": [json.dumps(p["entities"], ensure_ascii=False)
                                      for p in predictions]})


mlflow.models.set_model(ProfnerModel())
