"""Multi-process (multi-host) dcma: jax.distributed.initialize, then the usual fit and effects.

On a cluster, run one process per host (or per accelerator group), each with the same
arguments and its own ``--process-id``::

    python experiments/multihost.py worker --coordinator HOST0:12355 --processes 2 --process-id 0
    python experiments/multihost.py worker --coordinator HOST0:12355 --processes 2 --process-id 1

After :func:`jax.distributed.initialize`, ``jax.devices()`` lists every process's devices, so
dcma's default mesh (:func:`dcma_jax.devices.device_mesh`) spans them all: Monte Carlo chunks
and bootstrap replicates are split across hosts. Every process runs the same program (JAX's
multi-controller model) and ends with the same, fully replicated results; process 0 writes
them.

``python experiments/multihost.py local`` simulates that on one machine: it starts
``--processes`` worker processes on ``127.0.0.1``, each with ``--devices`` CPU devices (CPU
collectives over gloo), and one single-device process as the reference, then reports the
largest difference. That is all this script has been run on: simulated devices on one host,
not a real cluster (see docs/devices.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def worker(args: argparse.Namespace) -> None:
    """One process: join the cluster (when there is one), fit, query, write from process 0."""
    import jax

    if args.processes > 1:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.processes,
            process_id=args.process_id,
        )
    import dcma_jax as dj
    from dcma_jax import devices

    data = dj.load_default_study()
    fitted = dj.fit(data, generators=args.generators, bootstrap=args.bootstrap, seed=args.seed)
    result = fitted.effects(num_draws=args.draws, quantiles=(0.5,), distances=("energy",))
    if jax.process_index() == 0:
        table = result.table[["effect", "functional", "level", "estimate", "ci_low", "ci_high"]]
        doc = {
            "devices": devices.describe(),
            "effects": json.loads(table.to_json(orient="records")),
        }
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")


def local(args: argparse.Namespace) -> None:
    """Workers on 127.0.0.1 with simulated CPU devices, beside a one-device reference."""
    common = [
        "--generators",
        args.generators,
        "--bootstrap",
        str(args.bootstrap),
        "--draws",
        str(args.draws),
        "--seed",
        str(args.seed),
    ]
    out = RESULTS / "multihost"
    out.mkdir(parents=True, exist_ok=True)

    def start(count: int, extra: list[str], target: Path) -> subprocess.Popen:
        flags = f"--xla_force_host_platform_device_count={count}"
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
        command = [sys.executable, __file__, "worker", *common, *extra, "--out", str(target)]
        return subprocess.Popen(command, env=env)

    cluster = [
        start(
            args.devices,
            [
                "--coordinator",
                f"127.0.0.1:{args.port}",
                "--processes",
                str(args.processes),
                "--process-id",
                str(i),
            ],
            out / "cluster.json",
        )
        for i in range(args.processes)
    ]
    reference = start(1, ["--processes", "1"], out / "one_device.json")
    workers = [*cluster, reference]
    while any(p.poll() is None for p in workers):
        if any(p.poll() not in (None, 0) for p in workers):
            for p in workers:  # the others would wait for the failed one for ever
                p.kill()
            raise SystemExit("a worker failed (its error is above)")
        time.sleep(0.5)
    if any(p.returncode != 0 for p in workers):
        raise SystemExit("a worker failed (its error is above)")
    docs = [json.loads((out / name).read_text()) for name in ("cluster.json", "one_device.json")]
    worst = max(
        abs(a[column] - b[column])
        for a, b in zip(docs[0]["effects"], docs[1]["effects"], strict=True)
        for column in ("estimate", "ci_low", "ci_high")
        if a[column] is not None
    )
    print(f"cluster: {docs[0]['devices']}")
    print(f"reference: {docs[1]['devices']}")
    print(f"largest difference over estimates and interval bounds: {worst:.3g}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("worker", "local"))
    parser.add_argument("--generators", default="linear")
    parser.add_argument("--bootstrap", type=int, default=8)
    parser.add_argument("--draws", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--devices", type=int, default=2, help="local: CPU devices a process")
    parser.add_argument("--coordinator", default="127.0.0.1:12355", help="worker: HOST:PORT")
    parser.add_argument("--port", type=int, default=12355, help="local: coordinator port")
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "multihost.json"))
    args = parser.parse_args(argv)
    (worker if args.mode == "worker" else local)(args)


if __name__ == "__main__":
    main()
