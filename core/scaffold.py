"""``foremforge init``: lay out a new project folder the way TinyForgeAI's ``init`` did.

It creates what is missing and never touches what exists: an existing file is never
overwritten, an existing folder is left as it is. Everything is checked before anything is
created, so a blocked path (a file where a folder should be) creates nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

__all__ = ["PROJECT_DIRS", "SAMPLE_QNA", "STARTER_FILES", "InitPlan", "plan_init", "run_init"]

PROJECT_DIRS = ("backend", "connectors", "docs", "tests", "examples")

# The sample dataset `foremforge init` writes (TinyForgeAI's examples/sample_qna.jsonl), embedded:
# an installed package has no examples/ folder to copy from.
SAMPLE_QNA = (
    '{"input": "How do I reset my password?", "output": "Go to Settings > Account > Reset Password '
    'and follow the instructions."}\n'
    '{"input": "What is your refund policy?", "output": "We offer full refunds within 30 days of '
    'purchase with a valid receipt."}\n'
    '{"input": "How can I contact support?", "output": "You can reach our support team at '
    'support@example.com or call 1-800-SUPPORT."}\n'
)

_README = """\
# My TinyForge project

Training data: JSONL, one `{"input": ..., "output": ...}` object per line
(see `examples/sample_qna.jsonl`).

```bash
foremforge validate --data examples/sample_qna.jsonl
foremforge train --data examples/sample_qna.jsonl --out models/tiny --dry-run     # check the pipeline
foremforge train --data examples/sample_qna.jsonl --out models/tiny --use-lora    # fine-tune for real
foremforge export --model-path models/tiny --output-dir services/tiny --export-onnx
foremforge serve --service services/tiny --port 8000
```

Folders: `backend/` and `connectors/` for your own code (data preparation, loaders),
`docs/` for notes, `tests/` for tests, `examples/` for datasets.
Settings the tools read from the environment are listed in `.env.example`.
"""

_ENV_EXAMPLE = """\
# Settings TinyForge reads from the environment. Nothing loads this file by itself:
# export the lines you need in your shell, or pass it to `docker run --env-file`.

# Where converted base models are cached (default ~/.cache/tinyforge)
# TINYFORGE_CACHE=/path/to/cache

# Hugging Face: use only models already in the local cache, never download
# HF_HUB_OFFLINE=1

# The exported service (foremforge serve, or uvicorn app:app in the service folder)
# TINYFORGE_PRECISION=int8
# TINYFORGE_THREADS=0
# TINYFORGE_MAX_INPUT_CHARS=10000
# TINYFORGE_MAX_NEW_TOKENS=128
"""

STARTER_FILES: dict[str, str] = {
    "README.md": _README,
    ".env.example": _ENV_EXAMPLE,
    "examples/sample_qna.jsonl": SAMPLE_QNA,
}


@dataclass
class InitPlan:
    """What ``init`` would create in ``root`` and what is already there."""

    root: Path
    dirs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # a path of the wrong kind is in the way

    @property
    def empty(self) -> bool:
        return not self.dirs and not self.files


def plan_init(root: Path) -> InitPlan:
    """Compare ``root`` with the project layout, without changing anything."""
    plan = InitPlan(root)
    for name in PROJECT_DIRS:
        path = root / name
        if path.is_dir():
            plan.existing.append(f"{name}/")
        elif path.exists() or path.is_symlink():
            plan.blocked.append(f"{name} exists and is not a folder")
        else:
            plan.dirs.append(name)
    for name in STARTER_FILES:
        path = root / name
        if path.is_file():
            plan.existing.append(name)
        elif path.exists() or path.is_symlink():
            plan.blocked.append(f"{name} exists and is not a file")
        else:
            plan.files.append(name)
    return plan


def run_init(
    root: Path,
    yes: bool,
    out: TextIO,
    err: TextIO,
    ask: Callable[[str], str | None],
) -> int:
    """Create the missing parts of the layout in ``root``; return the exit status.

    ``ask`` shows a prompt and returns the answer (None at end of input). Without ``yes`` the
    user confirms first; anything but y/yes aborts with status 1.
    """
    import os

    plan = plan_init(root)
    if not plan.empty and not plan.blocked and not os.access(root, os.W_OK | os.X_OK):
        print(f"Error: cannot create files in {root} (no write permission); nothing was created", file=err)
        return 1
    for blocked in plan.blocked:
        print(f"Error: {root / blocked}; move it away and run init again (nothing was created)", file=err)
    if plan.blocked:
        return 1
    for name in plan.existing:
        print(f"Already exists: {name}", file=out)
    if plan.empty:
        print(f"Nothing to create: {root} already has the project layout.", file=out)
        return 0
    if not yes:
        print(f"In {root} this creates:", file=out)
        for name in plan.dirs:
            print(f"  {name}/", file=out)
        for name in plan.files:
            print(f"  {name}", file=out)
        answer = ask("Create them? [y/N] ")
        if (answer or "").strip().lower() not in ("y", "yes"):
            print("Aborted: nothing was created." + (" (no answer; use --yes)" if answer is None else ""), file=out)
            return 1
    try:
        _create(root, plan, out)
    except OSError as exc:  # the disk filled, or the folder changed under us
        print(f"Error: could not create {exc.filename or root}: {exc.strerror or exc}; what was created "
              "above stays (run init again once fixed)", file=err)
        return 1
    print(
        f"Initialization complete: {len(plan.dirs)} directories and {len(plan.files)} files created in {root}.",
        file=out,
    )
    return 0


def _create(root: Path, plan: InitPlan, out: TextIO) -> None:
    for name in plan.dirs:
        (root / name).mkdir(parents=True, exist_ok=True)
        print(f"Created directory: {name}/", file=out)
    for name in plan.files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # "x": never overwrite, even a file that appeared since the plan was made.
            with open(path, "x", encoding="utf-8", newline="\n") as handle:
                handle.write(STARTER_FILES[name])
        except FileExistsError:
            print(f"Already exists: {name}", file=out)
            continue
        print(f"Created file: {name}", file=out)
