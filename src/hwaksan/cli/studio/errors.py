"""The one error a studio request ends with: an HTTP status and one line."""

from __future__ import annotations

__all__ = ["RequestError", "one_line"]


class RequestError(Exception):
    """A request the studio refuses: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(one_line(message))
        self.status = status
        self.message = one_line(message)


def one_line(message: object) -> str:
    """``message`` as one line (whitespace runs, newlines included, become one space)."""
    return " ".join(str(message).split()) or "error"
