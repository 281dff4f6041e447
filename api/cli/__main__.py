"""`python -m evoprune.api.cli`: the `evoprune` command line, as the console script runs it."""

import sys

from evoprune.api.cli.main import main

sys.exit(main())
