# Hooks file for `nrb serve --hooks` in engine tests: appends to $NRB_TEST_EVENT_LOG, in the order the server applies
# them, every gameplay event ("EVENT <name>") and every change of the dominant style of the whole view and of the
# objects named in $NRB_TEST_STYLE_OBJECTS ("STYLE global <style>", "STYLE object:<id> <style>"): what the engine's
# set_style and fire_event calls did, as the renderer saw them.
import os

_fd = os.open(os.environ["NRB_TEST_EVENT_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
_objects = [int(i) for i in os.environ.get("NRB_TEST_STYLE_OBJECTS", "").split(",") if i.strip()]


def _dominant(weights):
    return max(weights.items(), key=lambda kv: kv[1])[0] if weights else "identity"


@every_frame  # noqa: F821 - provided by the hooks loader
def _record(style, ctx):
    lines = [f"EVENT {e.name}\n" for e in ctx.events]
    seen = ctx.state.setdefault("dominant", {})
    for key, weights in [("global", style.weights()), *((f"object:{i}", style.weights(object=i)) for i in _objects)]:
        name = _dominant(weights)
        if seen.get(key) != name:
            seen[key] = name
            lines.append(f"STYLE {key} {name}\n")
    if lines:
        os.write(_fd, "".join(lines).encode())
