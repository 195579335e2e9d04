"""raftredis benchmarks: run ``python bench/run.py --quick|--full --out DIR``.

Each benchmark lives in a module of its own and returns a list of
:class:`bench.common.Figure`; :mod:`bench.run` runs them and writes the
results, :mod:`bench.plots` draws them.
"""
