"""``python -m deterministic``: the command line (see ``_cli``)."""

import sys

from ._cli import main

sys.exit(main())
