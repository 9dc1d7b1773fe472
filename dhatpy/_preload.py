"""Where the preload library is installed: ``libdhatc_preload.so`` beside this
module (``python -m dhatc preload-path`` prints it)."""

from __future__ import annotations

import os

PRELOAD_LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libdhatc_preload.so")
