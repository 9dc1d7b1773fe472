"""The module pytest loads as dhatc's plugin (entry point ``pytest11``, name
``dhatc``; turn it off with ``-p no:dhatc``).  The plugin itself, and its
documentation, is :mod:`dhatc._pytest_hooks` and the modules it names.

It needs pytest 7 or later.  Being installed next to an older pytest must not
keep pytest from starting, so there this module only says, once, that the
plugin is off.
"""

from __future__ import annotations

import warnings

import pytest

#: Whether this pytest can run the plugin (``pytest.StashKey`` came in 7.0).
SUPPORTED = hasattr(pytest, "StashKey")

if SUPPORTED:
    # The names pytest looks for in a plugin module: its hooks and fixture.
    from ._pytest_hooks import (  # noqa: F401
        dhatc_heap,
        pytest_addoption,
        pytest_configure,
        pytest_pyfunc_call,
        pytest_runtest_call,
        pytest_runtest_makereport,
        pytest_runtest_setup,
    )
    from ._pytest_limits import LIMIT_FIELDS, LimitError, parse_size  # noqa: F401
else:

    def pytest_configure(config: pytest.Config) -> None:
        """Warns that the plugin is off under this pytest."""
        warnings.warn(
            pytest.PytestWarning(
                f"dhatc: the pytest plugin needs pytest >= 7 (this is {pytest.__version__}); "
                "it is off: upgrade pytest to use limit_heap and dhatc_heap"
            )
        )
