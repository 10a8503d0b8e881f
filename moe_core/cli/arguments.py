"""What every command checks the same way: the folders the user named."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from moe_core.errors import UserInputError


def existing_folders(folders: Sequence[str | Path], option: str = "--out") -> list[Path]:
    """The folders as paths; a UserInputError naming the first one that is not a folder."""
    for folder in folders:
        if not Path(folder).is_dir():
            raise UserInputError(f"{option} {folder}: no such folder; pass a folder of runs "
                                 "(the --out of a suite)")
    return [Path(folder) for folder in folders]
