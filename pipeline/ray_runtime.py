"""Starting or joining Ray: the one place winnow calls `ray.init`.

No address (and no RAY_ADDRESS) → a local Ray started by winnow, the embedded default that
`make demo`, the CLI and the tests use. `--address`/RAY_ADDRESS → an existing cluster, which is
also what a `ray job submit` entrypoint sees (Ray sets RAY_ADDRESS for the job's driver).
"""

from __future__ import annotations

import logging
import os


def init_ray(address: str | None = None, workers: int | None = None) -> None:
    """Initialise Ray once per process; a second call is a no-op."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        return
    ray.init(num_cpus=workers or None, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=True, configure_logging=True)
