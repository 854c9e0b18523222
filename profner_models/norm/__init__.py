"""MEDDOPROF NORM: the sentence-embedding kNN index over code descriptions and training mentions
(``index``) and the task's resource built from a config and the training documents
(``meddoprof``). Imports ``config``, ``corpus``, ``documents``, ``sample`` and ``pretrained``."""
