"""Test support, in one place: ``serverkit`` (real ``nrb serve`` processes, a synthetic engine's buffers, the libnrb
game client the tests drive), and the renderers and hooks the tests hand to ``nrb serve`` by path
(``helper_file("fault_renderer.py")``).

The tests import it as ``helpers`` (pytest puts ``tests/`` on ``sys.path``: ``pythonpath`` in pyproject.toml), so
no test edits ``sys.path``. The renderer and hook files import only ``bridge``: ``nrb serve`` loads them by path.
"""
