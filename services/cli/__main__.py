"""``python -m services.cli``: the command line over the console's services."""

import sys

from services.cli.main import main

sys.exit(main())
