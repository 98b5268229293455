"""Progress bars (tqdm: rate and ETA) that stay quiet when output is not a terminal or in tests."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def progress_bar(**kwargs) -> tqdm:
    # under torchrun only rank 0 shows progress
    quiet = os.environ.get("EDGEKIT_NO_PROGRESS") == "1" or os.environ.get("RANK", "0") != "0"
    # In a log file (CI) a bar redrawn twice a second is noise: update every 30 s there.
    interval = 0.5 if sys.stderr.isatty() else 30.0
    return tqdm(disable=quiet, file=sys.stderr, dynamic_ncols=True, mininterval=interval, leave=False, **kwargs)
