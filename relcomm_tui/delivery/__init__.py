"""The send: `engine.SendEngine` (every delivery exactly once or loudly in doubt), with `events`
(what a run reports), `jobs` (which deliveries, their order, pace and retries), `committer`
(the ledger's group commit), `outbox` (the dry run) and `testsend` (the test send)."""
