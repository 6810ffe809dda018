"""The record of a configuration chosen by cross-validation (``configuration.json``): its name,
format and reader. A leaf module, so that prediction (:mod:`medseg.inference.ensemble`) can read a
choice without importing the evaluation that makes it
(:mod:`medseg.evaluation.configuration_choice`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHOICE_FILE = "configuration.json"
FORMAT = "medseg-configuration-choice/1"


def read_choice(folder: str | Path) -> dict[str, Any] | None:
    """``folder/configuration.json`` as a dict, or None when the folder has none.

    Raises:
        CorruptFileError: a damaged record.
    """
    from medseg.errors import CorruptFileError

    path = Path(folder) / CHOICE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("format") != FORMAT or not record["chosen"]["runs"] or not record["chosen"]["name"]:
            raise ValueError(f"not a {FORMAT} record")
        return record
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptFileError(
            f"{path} is damaged: {exc}", hint="choose again with medseg crossval RUN_A RUN_B -o FOLDER"
        ) from None
