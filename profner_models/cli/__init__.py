"""The ``profner`` command: thin entry points (``main`` discovers the sub-commands through the
``profner.commands`` entry points; ``train``, ``predict``, ``evaluate``, ``data`` live here, the
Ray-backed ``tune`` / ``serve`` in their own packages). The top room: it may import any other."""
