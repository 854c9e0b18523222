"""Serving trained models over HTTP with Ray Serve (``profner serve``).

``serve.app``: the deployment and its app builder; ``serve.schemas``: request/response models
and body checks; ``serve.resolve``: MODEL_REF -> model dir; ``serve.runner``: a local server's
lifecycle; ``serve.cli``: the command.
"""
