"""The servers `relcomm demo` runs on loopback, so the whole journey works with nothing external.

Only `relcomm demo` (relcomm_tui/commands/demo.py) imports this package; nothing in the core does
(tests/test_import_hygiene_demo.py). Modules, each importing only those listed after it:

* mailserver: :class:`~.mailserver.LoopbackMailServer`, the SMTP server (start/stop, messages, reports);
* session: one SMTP conversation (aiosmtpd plus PIPELINING, DSN, enhanced codes, AUTH);
* esmtp: the MAIL/RCPT parameter rules and enhanced status codes, as plain functions
  (decoding xtext with relcomm's one codec, transport/xtext.py: the only import from the core);
* reports: the DSNs and read receipts the server writes back later, as a relay would;
* store: what was accepted (:class:`~.store.AcceptedMessage`) and the Maildir it went into;
* webhook_receiver: the stand-in for the chat webhook.

The tests extend these servers with fault injection and a command log
(tests/faulty_mailserver.py, tests/smtp_faults.py, tests/http_receiver.py); none of that is here.
"""
