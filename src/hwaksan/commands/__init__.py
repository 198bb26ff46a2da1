"""Sub-commands of ``hwaksan`` beyond the core ones in :mod:`hwaksan.cli`.

Each module here has ``register(sub)``, which adds its sub-command parsers to the ``hwaksan``
sub-parser collection (``argparse._SubParsersAction``) and sets ``func`` on each; :mod:`hwaksan.cli`
calls them in the order of :data:`COMMAND_MODULES`. These modules belong to the CLI layer: they
may import any part of the package.
"""

COMMAND_MODULES = ("evaluate", "guidance", "flows", "tasks", "latent")
