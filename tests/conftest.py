"""Fixtures shared by the test files."""
import pytest

import fastnn


@pytest.fixture
def restore_runtime():
    """Put back the thread count and CPU ISA path a test may change."""
    threads, isa = fastnn.get_num_threads(), fastnn.get_cpu_isa()
    yield
    fastnn.set_num_threads(threads)
    fastnn.set_cpu_isa(isa)
