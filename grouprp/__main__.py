"""`python -m grouprp ...`, which is also how launchers start it: `torchrun -m grouprp train CONFIG`."""

import sys

from grouprp.cli import main

sys.exit(main())
