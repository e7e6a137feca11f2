"""``python -m jaxmlp``: the ``jaxmlp`` command."""
import sys

from jaxmlp.app._entry import main

sys.exit(main())
