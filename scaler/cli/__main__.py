"""`python -m scaler.cli ...`: the `scaler` command where the console script is not installed
(e.g. a Ray job whose working dir is the project)."""

import sys

from scaler.cli import main

sys.exit(main())
