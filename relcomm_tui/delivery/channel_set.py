"""The channels one send uses: each opened once, before its first delivery, with the pace it
keeps (how many at once, how fast, how often retried: the channel's own settings), and closed
once at the end, politely and best effort (every outcome is already in the ledger by then)."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable, Mapping

from ..channels import Channel, ChannelStopped, channel_factory
from ..plan.model import Plan
from .jobs import Pace, channel_options


class ChannelSet:
    def __init__(self, *, password: str | None, render: object,
                 overrides: Mapping[str, Callable[..., Channel]], retry_overrides: Mapping[str, float]) -> None:
        self.password, self.render = password, render
        self._overrides, self._retry_overrides = dict(overrides), dict(retry_overrides)
        self._channels: dict[str, Channel] = {}
        self.paces: dict[str, Pace] = {}

    def factory(self, name: str) -> Callable[..., Channel] | None:
        """What makes channel `name` (a test's stand-in first), or None when relcomm has no such channel."""
        return self._overrides.get(name) or channel_factory(name)

    def __getitem__(self, name: str) -> Channel:
        return self._channels[name]

    async def open(self, plan: Plan, names: Iterable[str]) -> tuple[str, str] | None:
        """Open each channel once for `plan` as this send has it (its invitations' UIDs and sequences
        filled in); (message, hint) of the first that cannot be used, else None."""
        for name in dict.fromkeys(names):
            factory = self.factory(name)
            assert factory is not None
            channel = self._channels[name] = factory(plan, **channel_options(name, self.password, self.render))
            # The channel says how many at once, how fast and how often retried; the engine keeps to it.
            self.paces[name] = Pace(channel.settings, replace(channel.settings.retry, **self._retry_overrides))
            try:
                await channel.open()
            except ChannelStopped as error:
                return error.message, error.hint
        return None

    async def close(self) -> dict[str, object]:
        """Close every channel opened; per channel what it reports of itself (email's SMTP round trips)."""
        stats: dict[str, object] = {}
        for name, channel in self._channels.items():
            stats[name] = {"round_trips": getattr(channel, "round_trips", None)}
            try:
                await channel.close()
            except Exception:
                pass  # closing politely is best effort; every outcome is already recorded
        return stats
