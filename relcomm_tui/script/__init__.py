"""The plan's script (issue 14): send in the order, at the times and with the checkpoints the plan sets.

- `scheduler`: pure: plan steps + ledger facts + time -> where every step stands, what to do now;
- `progress`: the same read from (and decisions written to) the ledger;
- `runner`: runs the steps by calling the send engine for each step's communiques;
- `clock`: real, manual (tests) and compressed (demo) time. Validation of a script: checks/script.py.

Nothing here imports Textual: the app's timeline and the headless commands share it.
"""
