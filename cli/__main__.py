"""`python -m cli ...` is `dnma ...` (what the stack and the tests spawn)."""

import sys

from cli.main import main

sys.exit(main())
