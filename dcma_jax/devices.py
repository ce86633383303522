"""Devices: a one-axis mesh over the accelerators, and a batch axis split across it.

The Monte Carlo chunks of a simulation and the bootstrap replicates (their fits and their
simulations) are independent units, each with its own random stream (a chunk's key is
``fold_in(key, chunk)``, a replicate's key is its own). :func:`map_over_devices` splits such a
leading axis across the devices of a :class:`jax.sharding.Mesh` with :func:`jax.shard_map`:
each device runs the unchanged one-device program on its share, so the numbers do not depend
on how many devices there are (simulations bit for bit; ``vmap``ped fits up to float32
rounding, as XLA sums in another order for another ``vmap`` width). The axis is padded to a
multiple of the device count with copies of its last unit, whose results are dropped. On one
device nothing is wrapped: the program is exactly the unsharded one.

Several hosts: call :func:`jax.distributed.initialize` before anything else; ``jax.devices()``
then lists every process's devices and :func:`device_mesh` spans them (see
``docs/devices.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dcma_jax.errors import ArgumentError

#: The name of the mesh axis the batch axes are split over.
AXIS = "devices"


def device_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named :data:`AXIS`.

    Args:
      devices: the devices, or how many of ``jax.devices()`` to take (the first ones);
        default: every device of every process.

    Raises:
      ArgumentError: a count outside ``1..jax.device_count()``, or no devices.
    """
    available = jax.devices()
    if devices is None:
        devices = available
    elif isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise ArgumentError(f"devices must be in 1..{len(available)}, got {devices}")
        devices = available[:devices]
    if len(devices) == 0:
        raise ArgumentError("devices: need at least one device")
    return Mesh(np.asarray(devices), (AXIS,))


def resolve(mesh: Mesh | None) -> Mesh:
    """``mesh``, or :func:`device_mesh` over every device when ``None`` (the queries' default)."""
    return device_mesh() if mesh is None else mesh


def describe(mesh: Mesh | None = None) -> dict[str, Any]:
    """The devices a mesh spans, JSON-ready: platform, device kind, count, processes.

    For a result's ``meta``, so a reader can tell where the numbers were computed (they
    depend on it only through the float32 rounding of bootstrap fits).
    """
    devices = list(resolve(mesh).devices.flat)
    return {
        "platform": devices[0].platform,
        "kind": sorted({d.device_kind for d in devices}),
        "count": len(devices),
        "processes": len({d.process_index for d in devices}),
    }


def map_over_devices(
    fn: Callable[[Any, Any], Any], mesh: Mesh, batched: Any, shared: Any = ()
) -> Any:
    """``fn(batched, shared)`` with the leading axis of ``batched`` split across ``mesh``.

    ``fn`` must treat the units along that axis independently (a ``lax.map`` or ``vmap`` over
    it) and return pytrees with the same leading axis. Each device gets a contiguous share of
    ``ceil(n / devices)`` units, the last one's padded with copies of unit ``n - 1``; the
    padding's results are dropped. ``shared`` is passed whole to every device. With one
    device this is ``fn(batched, shared)`` itself. The outputs are gathered whole onto every
    device, so every process of a multi-host run can read them.

    Args:
      fn: ``(batched share, shared) -> outputs``, traceable.
      mesh: a one-axis mesh from :func:`device_mesh`.
      batched: pytree of arrays with a common leading axis ``n``.
      shared: pytree every device reads in full.

    Returns:
      ``fn``'s outputs for the ``n`` units, in order.
    """
    size = mesh.devices.size
    if size == 1:
        return fn(batched, shared)
    n = jax.tree.leaves(batched)[0].shape[0]
    index = jnp.minimum(jnp.arange(-(-n // size) * size), n - 1)
    padded = jax.tree.map(lambda v: v[index], batched)
    split = jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=(PartitionSpec(AXIS), PartitionSpec()),
        out_specs=PartitionSpec(AXIS),
        # fn uses no collectives; the check would reject loops whose carry starts equal on
        # every device and becomes per-device (a fit's zero-initialised biases).
        check_vma=False,
    )
    # Whole on every device: each process of a multi-host run can read every result.
    whole = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(
        lambda v: jax.lax.with_sharding_constraint(v[:n], whole), split(padded, shared)
    )
