"""The two kinds of failure the command line reports without a traceback.

`UserError`: bad input that the user can fix (a setting, a path, a file, a model name). The CLI
prints it as one line `hap: error: ...` and exits 2, before any compute where the input can be
checked up front. `RunFailed`: a run that could not produce a result (a search whose loss turned
NaN or infinite): the sweep records it as a failed row and goes on; `hap discover` exits 1.

Everything else (a shape bug, out of memory) is not reworded: it propagates with its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input the user can fix; the message names the fix."""


class ConfigError(UserError):
    """A setting (a --set key or value, a config field) that a backend's config does not take."""


class RunFailed(RuntimeError):
    """A run that ended without a usable result; the message is the reason."""
