"""The application layer: decisions the app (`tui/`) and the command line (`commands/`) both make.

Each lives here once, without Textual, so the two can never disagree:

- `readiness`: may this plan be sent now, and if not, why (the checklist's lock, `relcomm send`).
- `board`: where each delivery stands (the send screen, `relcomm status`, the confirm dialog's
  count, the checklist's summary after a send).
- `credentials`: the SMTP password: resolved from the plan's reference, else asked through the
  caller's callback (a dialog, a terminal prompt) or refused headless with a hint.
- `manual`: ticking a manual step done (the send screen, `relcomm confirm`).
- `review`: signing off stakeholder groups (the checklist, `relcomm review`).
"""
