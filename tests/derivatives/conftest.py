"""The derivatives tests' shared helpers (helpers.py) assert: rewrite them as pytest does a test."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.derivatives.helpers")
