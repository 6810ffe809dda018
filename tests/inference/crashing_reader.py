"""A reader for :data:`medseg.io.isolated.READER_ENV` that dies like a native crash.

An input whose name contains ``segfault`` kills the reading process with SIGSEGV, as
SimpleITK did on a MetaImage header with ``NDims = 1e30`` before headers were checked; ``hang``
sleeps for an hour, as ITK did on a damaged compressed MetaImage stream;
``logs`` emits a warning first; every other input is read normally.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from medseg.io import read_volume
from medseg.volume import Volume

NAME = "tests.inference.crashing_reader:read"


def read(path: str | Path, **kwargs: Any) -> Volume:
    """``read_volume``, except for the inputs named above."""
    name = Path(path).name
    if "segfault" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "hang" in name:
        time.sleep(3600)
    if "logs" in name:
        logging.getLogger("medseg.io.test").warning("a warning from the reader process")
    return read_volume(path, **kwargs)
