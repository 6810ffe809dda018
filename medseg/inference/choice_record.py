"""The records of what cross-validation (or a run's validation cases) chose: the configuration
(``configuration.json``) and the post-processing (``postprocessing.json``), their names, format and
readers. A leaf module, so that prediction (:mod:`medseg.inference.predictor`,
:mod:`medseg.inference.ensemble`) can read a choice without importing the evaluation that makes it
(:mod:`medseg.evaluation.configuration_choice`, :mod:`medseg.evaluation.oof`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHOICE_FILE = "configuration.json"
FORMAT = "medseg-configuration-choice/1"
#: The post-processing chosen for a run (out-of-fold, or on a single run's validation cases).
POSTPROCESSING_FILE = "postprocessing.json"


def recorded_postprocessing(run_dir: str | Path, checkpoint: str | None = None) -> Any:
    """The post-processing chosen for ``run_dir`` (its postprocessing.json) as
    :class:`~medseg.inference.postprocess.PostprocessOptions`, or None when it records none.

    Args:
        run_dir: The run (or chosen configuration) folder.
        checkpoint: The checkpoint about to predict (``best``, ``last``); a choice made on a
            single run's validation cases with another checkpoint is not used (None: any).

    Raises:
        CorruptFileError: a damaged postprocessing.json.
    """
    from medseg.errors import CorruptFileError
    from medseg.inference.postprocess import PostprocessOptions

    path = Path(run_dir) / POSTPROCESSING_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        options = PostprocessOptions.from_dict(record["options"])
    except (ValueError, KeyError, TypeError) as exc:
        hint = "train the run again, or choose again (medseg crossval RUN for a cross-validation run)"
        raise CorruptFileError(f"{path} is damaged: {exc}", hint=hint) from None
    made_for = record.get("checkpoint")
    if checkpoint is not None and made_for is not None and made_for != checkpoint:
        log.info("%s was chosen for the %s checkpoint, not %s: not applied", path, made_for, checkpoint)
        return None
    return options


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
