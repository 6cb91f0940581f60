"""Fixtures shared by the test files."""
import pytest

import fastnn


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "big: an op case sized for a GPU; test_ops.py runs it on the cuda backend "
                   "only, unless FASTNN_TEST_BIG=1")


@pytest.fixture
def restore_runtime():
    """Put back the thread count and CPU ISA path a test may change."""
    threads, isa = fastnn.get_num_threads(), fastnn.get_cpu_isa()
    yield
    fastnn.set_num_threads(threads)
    fastnn.set_cpu_isa(isa)
