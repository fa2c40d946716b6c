"""One-line warnings on stderr: what the user should know but what need not stop the run."""

from __future__ import annotations


def warn(text: str) -> None:
    """Print ``warning: text`` on stderr as one line (rich markup in ``text`` is not interpreted)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {escape(text)}", highlight=False)
