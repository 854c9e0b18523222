"""profner_models: the library (data, tokenisation, models, training, metrics, prediction).

It never imports Ray, MLflow or HTTP code: trainables/ and serve/ build on it.
"""

__version__ = "0.1.0"
