"""Models: the backbone and head contracts and their registries (``base``), the heads, the RNN
(System 2) and transformer (System 1) backbones, and the joint model (``joint``).

Imports ``registry``, ``text``, ``vectors``, ``e5`` and ``pretrained`` only (never tasks, training
or I/O of model dirs). Importing the package registers every architecture: adding one is a
module that registers its factory, plus its line below.
"""

from profner_models.models import heads, rnn, transformer  # noqa: F401  (they register)
from profner_models.models.base import (
    SEEN,
    UNKNOWN,
    VECTORS_ONLY,
    Backbone,
    BackboneContext,
    BackboneOutput,
    DocumentHead,
    Head,
    HeadContext,
    HeadOutput,
    WordHead,
    backbones,
    task_heads,
)
from profner_models.models.joint import (
    PLACEHOLDER,
    Encoded,
    JointModel,
    TrainedModel,
    collate,
    encode_text,
    encode_tokens,
    scored_batches,
)

__all__ = [
    "PLACEHOLDER", "SEEN", "UNKNOWN", "VECTORS_ONLY", "Backbone", "BackboneContext",
    "BackboneOutput", "DocumentHead", "Encoded", "Head", "HeadContext", "HeadOutput",
    "JointModel", "TrainedModel", "WordHead", "backbones", "collate", "encode_text",
    "encode_tokens", "scored_batches", "task_heads",
]
