"""Hydra discovers sweepers only under the `hydra_plugins` namespace; fpbench's lives here."""

from .union_sweeper import UnionSweeper

__all__ = ["UnionSweeper"]
