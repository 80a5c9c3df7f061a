"""Each channel's pace comes from its own plan table and the engine keeps to what the channel
declares: `[transport.smtp]` paces email only, `[channels.NAME]` paces webhook, pager and publish."""

from __future__ import annotations

from http_receiver import channel_plan
from waits import until
from relcomm_tui.channels import ChannelSettings, Intent, Outcome, RetryPolicy
from relcomm_tui.channels.email import WORKERS_PER_CONNECTION, EmailChannel
from relcomm_tui.channels.manual import ManualChannel
from relcomm_tui.channels.pager import PagerChannel
from relcomm_tui.channels.publish import PublishChannel
from relcomm_tui.channels.webhook import WebhookChannel
from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.store import ledger as L
from relcomm_tui.store.ledger import Ledger

SMTP_ONLY = """
    [transport.smtp]
    concurrency = 2
    rate = "60/min"
    max_attempts = 9

    [[communiques]]
    id = "eng-chat"
    to = ["engineering"]
    channel = "webhook"
    url = "http://127.0.0.1:9/hook"
    body = "x"
"""


def test_transport_smtp_paces_email_only(tmp_path):
    plan = channel_plan(tmp_path, SMTP_ONLY)
    email = EmailChannel(plan).settings
    assert email.in_flight == WORKERS_PER_CONNECTION * 2 and email.rate == 1.0 and email.retry.max_attempts == 9
    for channel in (WebhookChannel(plan), PagerChannel(plan), PublishChannel(plan)):
        assert channel.settings == ChannelSettings(in_flight=4, rate=None, retry=RetryPolicy(max_attempts=5)), channel.name
    assert ManualChannel(plan).settings.retry.max_attempts == 1  # nothing is sent, nothing to retry


def test_channels_tables_pace_their_own_channel(tmp_path):
    plan = channel_plan(tmp_path, SMTP_ONLY + """
    [channels.webhook]
    concurrency = 1
    rate = "2/s"
    max_attempts = 2
    timeout = 3

    [channels.pager]
    concurrency = 7
    """)
    hook = WebhookChannel(plan)
    assert hook.settings == ChannelSettings(in_flight=1, rate=2.0, retry=RetryPolicy(max_attempts=2))
    assert hook.http.timeouts.total == 3.0
    assert PagerChannel(plan).settings.in_flight == 7 and PublishChannel(plan).settings.in_flight == 4


def test_a_misspelt_channels_key_is_a_load_error_naming_it(tmp_path):
    from relcomm_tui.plan.loader import PlanError

    try:
        channel_plan(tmp_path, SMTP_ONLY + "\n    [channels.webhook]\n    concurency = 2\n")
    except PlanError as error:
        assert "concurency" in str(error) and "channels" in str(error)
    else:
        raise AssertionError("an unknown key in [channels.webhook] loaded")


class Counting:
    """A channel that declares `in_flight` and counts how many of its deliveries overlap."""

    def __init__(self, name: str, in_flight: int, total: int) -> None:
        self.name = name
        self.settings = ChannelSettings(in_flight=in_flight)
        self.total = total
        self.now = self.most = self.delivered = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def rehearse(self, job):  # pragma: no cover - not a dry run
        raise NotImplementedError

    async def deliver(self, job, intent: Intent) -> Outcome:
        await intent.commit()
        self.now += 1
        self.most = max(self.most, self.now)
        # Stay until a partner is here too (or no one else can come), then give a third a chance to
        # arrive: an engine that did not hold the channel to 2 would let it in.
        await until(lambda: self.now >= 2 or self.delivered + self.now == self.total, "a second delivery")
        try:
            await until(lambda: self.now >= 3, "a third delivery", seconds=0.3)
        except AssertionError:
            pass  # none came: the cap held
        self.now -= 1
        self.delivered += 1
        return Outcome("accepted", reply="ok")


async def test_the_engine_holds_each_channel_to_what_it_declares(tmp_path):
    posts = "".join(f"""
    [[communiques]]
    id = "chat-{i}"
    to = ["engineering"]
    channel = "webhook"
    url = "http://127.0.0.1:9/hook"
    body = "x"
    """ for i in range(8))
    plan = channel_plan(tmp_path, posts + """
    [[communiques]]
    id = "page"
    to = ["engineering"]
    channel = "pager"
    preset = "ntfy"
    url = "http://127.0.0.1:9/topic"
    body = "x"
    """)
    hooks, pages = Counting("webhook", 2, total=8), Counting("pager", 6, total=1)
    ledger = Ledger.open(plan.state_dir)
    engine = SendEngine(plan, ledger, channels={"webhook": lambda plan, **_: hooks, "pager": lambda plan, **_: pages})
    summary = await engine.run()
    assert summary.exit_code == 0 and summary.counts[L.ACCEPTED] == 9
    assert engine.in_flight == 6  # workers: as many as the busiest channel takes
    assert hooks.delivered == 8 and hooks.most == 2, "the webhook channel declared 2 at once"
    ledger.close()
