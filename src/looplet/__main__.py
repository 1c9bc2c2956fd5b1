"""``python -m looplet``: hands over to the command line."""

import sys

from .cli import main

sys.exit(main())
