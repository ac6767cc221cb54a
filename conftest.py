"""Fixtures for tests/ and plugins/*/tests: see pymysqlpool_registry.testing."""
from __future__ import annotations

pytest_plugins = ["pymysqlpool_registry.testing"]
