"""`python -m host_tools.cli` runs tokentool (for environments without the console script)."""
import sys

from host_tools.cli import main

sys.exit(main())
