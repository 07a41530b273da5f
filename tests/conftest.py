"""Fixtures shared by several test files."""

import signal

import pytest


@pytest.fixture
def python_sigint_handler():
    """Install Python's SIGINT handler for the test, then restore the previous one.

    Tests that simulate Ctrl-C with ``_thread.interrupt_main`` need it: that call does nothing
    while SIGINT is ignored, as it is in a command that a shell without job control starts in the
    background.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
