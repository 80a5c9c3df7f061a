"""Asked when the user quits (or leaves the send screen) while a send is running."""

from __future__ import annotations

from .ask import AskDialog


class ConfirmQuitDialog(AskDialog):
    """True: stop the send cleanly and leave. False: keep sending."""

    def __init__(self, done: int, total: int, *, leaving: str = "quit") -> None:
        super().__init__(
            f"A send is running ({done} of {total} done). Stop it and {leaving}?",
            "No new message is started; those already talking to the server get their replies "
            "recorded first. Nothing is sent twice: reopen the send screen to see where things "
            "stand and continue.",
            yes=f"Stop and {leaving}", no="Keep sending", title="Send running",
        )
