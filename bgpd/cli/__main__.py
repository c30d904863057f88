"""`python -m bgpd.cli ...`: the `kroute` command without its console script."""

import sys

from bgpd.cli.main import main

sys.exit(main())
