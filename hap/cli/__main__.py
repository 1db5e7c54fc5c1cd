"""`python -m hap.cli`: the `hap` command."""

import sys

from hap.cli import main

sys.exit(main())
