"""SQLAlchemy on top of a registry's pool: ``registry.engine(name)``.

SQLAlchemy is an optional extra (``pip install 'pymysqlpool-registry[sqlalchemy]'``); this
module imports it only when an engine is made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .pool import ConnectionPool

#: What registry.engine() sets itself: SQLAlchemy's own pooling stays out of the way.
_OWN = ("creator", "poolclass", "pool", "pool_reset_on_return", "pool_size", "max_overflow")


def engine(pool: Callable[[], ConnectionPool], **engine_kwargs: Any) -> Engine:
    """A SQLAlchemy Engine whose every connection is a loan from ``pool()``.

    SQLAlchemy's ``NullPool`` hands each checkout to ``pool().get_connection()`` and gives the
    connection back with its ``close()``; the registry's pool does the pooling, the
    reusability verdicts and the reset. SQLAlchemy's own reset on return is off
    (``pool_reset_on_return=None``): ours ends an open transaction at no cost at return (the
    ROLLBACK goes with the next borrower's first command), so a loan pays one ROLLBACK at most.
    """
    try:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool
    except ImportError as exc:  # pragma: no cover - the optional extra is missing
        raise ImportError(
            "registry.engine() needs SQLAlchemy: pip install 'pymysqlpool-registry[sqlalchemy]'"
        ) from exc
    taken = sorted(set(engine_kwargs) & set(_OWN))
    if taken:
        raise TypeError(
            f"registry.engine() sets {', '.join(taken)} itself: the registry's pool does the "
            "pooling (size it with max_size in the pool's config)"
        )
    return create_engine(
        "mysql+pymysql://",
        creator=lambda: pool().get_connection(),
        poolclass=NullPool,
        pool_reset_on_return=None,
        **engine_kwargs,
    )
