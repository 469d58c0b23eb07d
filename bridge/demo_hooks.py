"""Style hooks of ``nrb demo`` — and an example of a game team's hooks file (``nrb serve --hooks FILE``).

Loaded by ``bridge.hooks`` (never imported as a module): each ``@on`` hook runs on the frame that carries its
event, after the engine's own ``set_style`` commands of that frame; ``@every_frame`` hooks run after all event
hooks. ``ctx.time`` is the frame time in seconds, ``ctx.state`` a dict kept for the session.
"""

from bridge.hooks import every_frame, on


@on("weapon_powerup")
def weapon_turns_golden(event, style, ctx):
    # The engine targets the event at the weapon (object or material ids): only those pixels change.
    style.transition("golden", strength=1.0, over=float(event.params.get("over", 0.4)), target=event.target)


@on("boss_phase")
def boss_phase_goes_noir(event, style, ctx):
    if event.params.get("phase", 2) >= 2:
        style.transition("noir", strength=0.9, over=2.0, easing="ease_in_out")


@on("player_damaged")
def damage_flash(event, style, ctx):
    amount = max(0.0, min(1.0, float(event.params.get("amount", 0.5))))
    style.set("thermal", strength=amount, target=event.target)
    ctx.state["flash"] = (event.target, ctx.time + 0.25 + 0.5 * amount)


@every_frame
def fade_damage_flash(style, ctx):
    flash = ctx.state.get("flash")
    if flash is not None and ctx.time >= flash[1]:
        style.clear(over=0.3, target=flash[0])
        ctx.state["flash"] = None
