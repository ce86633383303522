"""``python -m dcma_jax.cli``: the ``dcma`` command."""

import sys

from dcma_jax.cli import main

sys.exit(main())
