"""Shared test set-up: no display, no network, an isolated HOME-free cache."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Question variants written by test runs go to a folder of this session, not the user's cache
# (the converted starter model stays in the shared cache: converting it takes half a minute).
if "TINYFORGE_VARIANTS_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["TINYFORGE_VARIANTS_CACHE"] = tempfile.mkdtemp(prefix="tinyforge-test-variants-")
    atexit.register(shutil.rmtree, os.environ["TINYFORGE_VARIANTS_CACHE"], True)
# Exported ONNX graphs too (the tiny models' graphs are shared within the session, as a user's are).
if "TINYFORGE_GRAPH_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["TINYFORGE_GRAPH_CACHE"] = tempfile.mkdtemp(prefix="tinyforge-test-graphs-")
    atexit.register(shutil.rmtree, os.environ["TINYFORGE_GRAPH_CACHE"], True)
