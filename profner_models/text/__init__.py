"""Text: tokenisation (spaCy-es with our rules), tag schemes, windows over long documents, word
pieces, vocabularies and batching (``features``), gazetteer flags. Imports ``documents``,
``spans`` and ``sample`` only."""
