"""``python -m facecluster`` runs the command line."""

from facecluster.cli import app

app(prog_name="facecluster")
