"""Default endpoint choice: the pool's ``endpoint_policy``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..endpoints import EndpointState
    from ..pool import ConnectionPool


@hookimpl(trylast=True)
def pymysqlpool_select_endpoint(
    pool: ConnectionPool, candidates: list[EndpointState]
) -> EndpointState:
    """failover: the first candidate; round-robin: the fewest chosen per weight;
    least-in-use: the fewest open connections per weight (ties: config order)."""
    policy = pool.config.endpoint_policy
    if policy == "round-robin":
        return min(candidates, key=lambda s: s.chosen / s.endpoint.weight)
    if policy == "least-in-use":
        return min(candidates, key=lambda s: s.open / s.endpoint.weight)
    return candidates[0]
