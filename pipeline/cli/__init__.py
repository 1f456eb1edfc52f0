"""The ``margin-tune`` command: one module per subcommand, and the flags they share.

Only the command that runs is imported (:mod:`margin_tune.pipeline.cli.main`), so ``--help``
and ``report`` start without torch or Ray. No command module imports another; ``resume``,
which hands a directory to the command that wrote it, is the one exception.
"""
