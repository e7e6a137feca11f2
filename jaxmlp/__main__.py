"""``python -m jaxmlp``: the ``jaxmlp`` command."""
import sys

from jaxmlp._entry import main

sys.exit(main())
