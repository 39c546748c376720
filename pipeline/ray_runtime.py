"""Starting or joining Ray: the one place winnow calls `ray.init`.

No address (and no RAY_ADDRESS) → a local Ray started by winnow, the embedded default that
`make demo`, the CLI and the tests use. `--address`/RAY_ADDRESS → an existing cluster, which is
also what a `ray job submit` entrypoint sees (Ray sets RAY_ADDRESS for the job's driver).

A cluster address that does not answer is an error within seconds (`ClusterUnreachable`), found
by a plain TCP connect before `ray.init`, which would otherwise keep retrying for a long time.
"""

from __future__ import annotations

import logging
import os
import socket

#: Seconds to wait for a cluster's GCS port to accept a connection.
CONNECT_TIMEOUT_S = 5.0


class ClusterUnreachable(ConnectionError):
    """The Ray cluster address given does not answer; the message names it."""


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a `host:port` or `ray://host:port` address; None for `auto`, `local` and
    other forms Ray resolves itself."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise `ClusterUnreachable` when `address` (host:port) does not accept a TCP connection."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            return
    except OSError as exc:
        raise ClusterUnreachable(f"Ray cluster at {address} does not answer ({type(exc).__name__}: {exc}); check "
                                 f"--address / ray.address / RAY_ADDRESS, or leave it unset to start a local Ray") from exc


def init_ray(address: str | None = None, workers: int | None = None) -> None:
    """Initialise Ray once per process; a second call is a no-op. An address that does not answer
    raises `ClusterUnreachable` before Ray is asked to connect."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        return
    ray.init(num_cpus=workers or None, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=True, configure_logging=True)
