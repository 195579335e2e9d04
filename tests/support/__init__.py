"""Helpers shared by the test folders (integration, chaos, topologies).

``tests/`` is on ``sys.path`` while pytest runs (``tests/conftest.py`` sits in it,
outside any package), so a test module anywhere below imports these as
``from support.kinds import unique_kind``.

* :mod:`support.kinds`: fresh kind names, and a kind's members as Redis holds them.
* :mod:`support.processes`: subprocesses a test starts, and what they start in turn.
"""
