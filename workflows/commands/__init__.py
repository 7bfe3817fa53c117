"""The command families of ``slidescope``: each module registers its subcommands and imports the
packages it needs inside its handlers, so a command loads only what it uses."""

from __future__ import annotations

from . import demo, merge, models, run, slide, tiling, training

__all__ = ["FAMILIES"]

#: The modules whose ``register(subparsers)`` adds their commands, in ``--help`` order.
FAMILIES = (slide, tiling, models, training, merge, run, demo)
