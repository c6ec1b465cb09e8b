"""``python -m core.cli`` is the ``foremforge`` command line."""

import sys

from core.cli import main

sys.exit(main())
