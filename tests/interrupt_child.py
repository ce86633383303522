"""Child process for tests/test_interrupts.py: long work under run_interruptible.

Usage: python tests/interrupt_child.py MODE MARKER CLEANUP [ignore-sigint]

MODE is ``spin`` (a jitted lax.while_loop that runs about a minute), ``compile`` (an XLA
compilation that takes several seconds) or ``sleep`` (no JAX work). The work writes MARKER
once it has started; the cleanup hook writes CLEANUP. Before the marker it prints a line
that stays in stdout's buffer (stdout is a pipe), to check that the exit flushes it.
"""

import signal
import sys
import time
from pathlib import Path

# Start like a command typed at an interactive shell (SIGINT raises KeyboardInterrupt),
# whatever the test runner inherited, or with SIGINT ignored like `nohup` / `cmd &`.
ignore = len(sys.argv) > 4 and sys.argv[4] == "ignore-sigint"
signal.signal(signal.SIGINT, signal.SIG_IGN if ignore else signal.default_int_handler)

from dcma_jax.interrupts import run_interruptible  # noqa: E402

mode, marker, cleanup = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])


def spin() -> int:
    import jax
    import jax.numpy as jnp
    from jax import lax

    def body(carry):
        i, v = carry
        return i + 1, jnp.sin(v) * 0.999 + 1e-3

    @jax.jit
    def long_loop(v):  # about 1 µs per step: 2**26 steps take about a minute
        return lax.while_loop(lambda c: c[0] < 2**26, body, (jnp.int32(0), v))[1]

    v = jnp.ones(256)
    compiled = long_loop.lower(v).compile()
    print("unflushed line before the work")
    marker.write_text("started")
    jax.block_until_ready(compiled(v))
    print("finished")
    return 0


def compile_big() -> int:
    import jax
    import jax.numpy as jnp

    def chain(x):
        for i in range(600):
            x = jnp.sin(x) @ jnp.cos(x.T) * (1.0 + i * 1e-6) if i % 2 else jnp.tanh(x + i)
        return x

    lowered = jax.jit(chain).lower(jnp.ones((8, 8)))
    print("unflushed line before the work")
    marker.write_text("started")
    lowered.compile()
    print("compiled")
    return 0


def sleep() -> int:
    print("unflushed line before the work")
    marker.write_text("started")
    time.sleep(60)
    print("finished")
    return 0


work = {"spin": spin, "compile": compile_big, "sleep": sleep}[mode]
sys.exit(run_interruptible(work, on_interrupt=lambda: cleanup.write_text("cleaned")))
