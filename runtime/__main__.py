"""`python -m ptc`: the `ptc` command line, for when the script is not on PATH."""

import sys

from ptc.cli import main

sys.exit(main())
