"""``python -m margin_tune``: the ``margin-tune`` command."""

from margin_tune.pipeline.cli.main import command

raise SystemExit(command())
