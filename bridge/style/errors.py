"""Typed errors of the style system: a game's style file, hooks or LUT that is wrong says what and where, and the
server keeps serving (a reload that fails keeps the previous styles)."""

from __future__ import annotations


class StyleError(ValueError):
    """A style definition, style file or LUT that cannot be used; the message says what and where."""


class StyleParamError(StyleError):
    """An unknown style parameter, or a value outside its documented range.

    ``param`` is the parameter's name; ``low``/``high`` its range (None for an unknown parameter)."""

    def __init__(self, message: str, param: str, low: float | None = None, high: float | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.low = low
        self.high = high
