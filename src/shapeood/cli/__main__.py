"""``python -m shapeood.cli`` runs the ``shapeood`` command."""

import sys

from shapeood.cli import main

sys.exit(main())
