"""Word vectors: pretrained vectors for words seen in training and for words met later.

Holds the vector tables and files (``base``), the texts vectors learn from with held-out
documents left out (``sources``), gensim skip-gram / CBOW / FastText (``gensim``),
multilingual-e5-small static vectors (``e5``) and the composed space a backbone uses
(``compose``: concat, PCA, unknown words). Imports ``config``, ``documents``, ``tokenize``,
``e5`` only.
"""

from profner_models.vectors.base import (
    Part,
    StaticPart,
    VectorsError,
    WordVectors,
    load_vectors,
    write_word2vec,
)
from profner_models.vectors.compose import VectorSpace, concat, space_from_config
from profner_models.vectors.e5 import E5Part
from profner_models.vectors.gensim import FastTextPart, train_part
from profner_models.vectors.sources import NOTHING, TRAIN_SOURCE, HeldOut

__all__ = [
    "E5Part", "FastTextPart", "HeldOut", "NOTHING", "Part", "StaticPart", "TRAIN_SOURCE",
    "VectorSpace", "VectorsError", "WordVectors", "concat", "load_vectors", "space_from_config",
    "train_part", "write_word2vec",
]
