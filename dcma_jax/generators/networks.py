"""Small networks shared by the neural generators."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
    """Feed-forward network ``c -> out`` with SiLU hidden layers."""

    hidden: Sequence[int]
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.silu(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)
