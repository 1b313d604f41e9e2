"""``python -m shapeood.cli`` runs the ``shapeood`` command."""

from shapeood.cli import entry

entry()
