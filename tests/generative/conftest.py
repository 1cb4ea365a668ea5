"""Shared set-up of the generative tests: every module runs with one intra-op thread (tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield
