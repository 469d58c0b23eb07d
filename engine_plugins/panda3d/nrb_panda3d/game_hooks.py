"""Style hooks of the Panda3D sample game (``nrb serve --hooks .../nrb_panda3d/game_hooks.py``).

The game itself calls ``set_style`` for the big changes (photoreal, the golden weapon, noir for the boss phase,
back to photoreal); these hooks add what is easier to say on the server side:

* ``player_damaged``: a short red pulse (the library's ``crimson`` look) over the whole view, fading out after
  ~0.3 s;
* ``weapon_powerup``: makes sure the weapon's pixels are golden even if the engine only fired the event;
* ``boss_phase``: forgets a running pulse, so the game's noir transition of the same frame wins.

Loaded by ``bridge.hooks`` (hot-reloaded when the file changes), never imported.
"""

from bridge.hooks import every_frame, on

PULSE_SECONDS = 0.3


RED = "crimson"


@on("player_damaged")
def red_pulse(event, style, ctx):
    # Blend red into the current look (whatever the game set: photoreal, noir, ...) and remember that look, so the
    # pulse fades back to it rather than to identity.
    amount = max(0.1, min(1.0, float(event.params.get("amount", 0.5))))
    target = event.target if event.target.scope != "global" else None
    before = ctx.state.get("pulse_restore") or style.weights(target=target)
    mix = {name: w * (1.0 - amount) for name, w in before.items()}
    mix[RED] = mix.get(RED, 0.0) + amount
    style.transition(mix, strength=1.0, over=0.05, target=target)
    ctx.state["pulse_until"] = ctx.time + PULSE_SECONDS
    ctx.state["pulse_restore"] = before
    ctx.state["pulse_target"] = target


@on("weapon_powerup")
def golden_weapon(event, style, ctx):
    if event.target.scope != "global":
        style.transition("golden", strength=1.0, over=float(event.params.get("over", 0.3)), target=event.target)


def _end_pulse(style, ctx, over):
    before = ctx.state.get("pulse_restore")
    if before:
        style.transition(before, strength=1.0, over=over, target=ctx.state.get("pulse_target"))
    ctx.state["pulse_until"] = 0
    ctx.state["pulse_restore"] = None


@on("boss_phase")
def boss_phase(event, style, ctx):
    ctx.state["pulse_until"] = 0  # the game's noir transition (same frame) wins over a running pulse
    ctx.state["pulse_restore"] = None


@every_frame
def fade_pulse(style, ctx):
    until = ctx.state.get("pulse_until", 0)
    if until and ctx.time >= until:
        _end_pulse(style, ctx, over=0.25)
