"""A profner model dir as an MLflow Model: the ``pyfunc`` flavour, logged "from code".

MLflow imports this file to rebuild the model (``mlflow.models.set_model`` at the bottom), so
nothing is pickled: the logged model holds this code, the profner model dir as an artifact
(``artifacts/model_dir``), a signature and an input example. Then::

    mlflow.pyfunc.load_model("models:/profner-rnn_narrow/1").predict(pd.DataFrame({"text": [...]}))
    mlflow models serve -m models:/profner-rnn_narrow/1 --env-manager local
    profner serve models:/profner-rnn_narrow/1        # reads artifacts/model_dir directly

Input: a string, a list of strings, or a DataFrame with a ``text`` column (or a single
column); the signature is one unnamed string column, which MLflow fills from all three. Output:
a DataFrame with ``label``, ``probability`` and ``entities`` (a JSON list of
``{start, end, type, text}``, plus ``class`` and ``code`` for MEDDOPROF), one row per text.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import mlflow
import pandas as pd

from profner_models.predict import Predictor

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

MODEL_DIR = "model_dir"  # the artifact key (and folder) of the profner model dir


class ProfnerModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.predictor = Predictor(context.artifacts[MODEL_DIR])

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: dict | None = None) -> pd.DataFrame:
        return to_frame([p.to_dict() for p in self.predictor.predict(texts_of(model_input))])


def texts_of(frame: pd.DataFrame) -> list[str]:
    """The texts: the ``text`` column, else the one column (under the signature MLflow turns
    a str or a list into a column named 0)."""
    if "text" in frame.columns:
        return [str(t) for t in frame["text"]]
    if len(frame.columns) != 1:
        raise ValueError(f"a DataFrame input needs a 'text' column (got columns {list(frame.columns)})")
    return [str(t) for t in frame.iloc[:, 0]]


def signature() -> ModelSignature:
    """One unnamed string column in, the prediction frame out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(Schema([ColSpec("string")]), Schema([
        ColSpec("long", "label"), ColSpec("double", "probability"), ColSpec("string", "entities")]))


def to_frame(predictions: list[dict]) -> pd.DataFrame:
    return pd.DataFrame({"label": [p["label"] for p in predictions],
                         "probability": [p["probability"] for p in predictions],
                         "entities": [json.dumps(p["entities"], ensure_ascii=False)
                                      for p in predictions]})


mlflow.models.set_model(ProfnerModel())
