"""Kept so that older imports work: everything here now lives in tests/support.py."""

from tests.support import KFADAPTER, PYTHON, Process

__all__ = ["KFADAPTER", "PYTHON", "Process"]
