"""The error a public function raises for a bad argument.

The ``dcma`` command reports the user errors — :class:`ArgumentError`,
:class:`~dcma_jax.data.DataError`, :class:`~dcma_jax.paths.PathSpecificError`,
:class:`~dcma_jax.persistence.ModelFileError`, :class:`~dcma_jax.training.TrainingError` and
file errors — as one line with exit status 2; any other exception is an internal error
(exit status 1), so a bug is never passed off as the user's mistake.
"""


class ArgumentError(ValueError):
    """A public function was called with a bad argument; the message names it."""
