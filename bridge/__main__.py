"""``python -m bridge`` = ``nrb``."""

import sys

from bridge.cli import main

sys.exit(main())
