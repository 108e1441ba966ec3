"""``python -m corral_cli`` runs the ``corral`` command."""

import sys

from corral_cli.main import main

sys.exit(main())
