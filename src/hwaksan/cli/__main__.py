"""``python -m hwaksan.cli ...``: the ``hwaksan`` command (the form torchrun runs)."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
