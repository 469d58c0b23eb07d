# Hooks file for `nrb serve --hooks` in tests: appends every event the server applies, in order, to the file
# named by $NRB_TEST_EVENT_LOG ("EVENT <name>" per line, one os.write per frame).
import os

_fd = os.open(os.environ["NRB_TEST_EVENT_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


@every_frame  # noqa: F821 - provided by the hooks loader
def _record(style, ctx):
    if ctx.events:
        os.write(_fd, "".join(f"EVENT {e.name}\n" for e in ctx.events).encode())
