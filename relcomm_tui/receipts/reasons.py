"""What a report says about one recipient, in words a person can act on, and whether it is final.

Rules of this module:

* A reason is the reporting server's own words about that recipient: the DSN's Diagnostic-Code
  first, then the recipient's entry in the human-readable part, then the RFC 3463 meaning of the
  status code. Never the MTA's boilerplate ("No action is required on your part...", "THIS IS A
  WARNING ONLY"): sentences made of it are dropped, whatever comes first in the text.
* A report labelled "delayed" is a final failure when the server's words about that recipient say
  the message is gone: expired in the queue, given up (OpenSMTPD sends "Action: delayed, Status:
  4.4.7, Envelope expired" when it drops a message). A delay's boilerplate ("will give up
  eventually") never counts, nor does an expired certificate or password.
* Everything here runs in time linear in the (capped) text: no nested quantifiers over free text.
"""

from __future__ import annotations

import bisect
import re

__all__ = [
    "Notification",
    "REASON_MAX",
    "choose",
    "clean",
    "says_final",
    "says_something",
    "status_meaning",
]

REASON_MAX = 300

# RFC 3463 enhanced status codes with the additions registered since (RFC 3886, 4468, 4954, 5248,
# 6710, 7293, 7372, 7505, 8689): the subject.detail part, shared by the 2, 4 and 5 classes.
_DETAIL = {
    "0.0": "other undefined status",
    "1.0": "other address status",
    "1.1": "bad destination mailbox address",
    "1.2": "bad destination system address",
    "1.3": "bad destination mailbox address syntax",
    "1.4": "destination mailbox address ambiguous",
    "1.5": "destination address valid",
    "1.6": "destination mailbox has moved, no forwarding address",
    "1.7": "bad sender's mailbox address syntax",
    "1.8": "bad sender's system address",
    "1.9": "message relayed to non-compliant mailer",
    "1.10": "recipient address has null MX",
    "2.0": "other or undefined mailbox status",
    "2.1": "mailbox disabled, not accepting messages",
    "2.2": "mailbox full",
    "2.3": "message length exceeds administrative limit",
    "2.4": "mailing list expansion problem",
    "3.0": "other or undefined mail system status",
    "3.1": "mail system full",
    "3.2": "system not accepting network messages",
    "3.3": "system not capable of selected features",
    "3.4": "message too big for system",
    "3.5": "system incorrectly configured",
    "3.6": "requested priority was changed",
    "4.0": "other or undefined network or routing status",
    "4.1": "no answer from host",
    "4.2": "bad connection",
    "4.3": "directory server failure",
    "4.4": "unable to route",
    "4.5": "mail system congestion",
    "4.6": "routing loop detected",
    "4.7": "delivery time expired",
    "5.0": "other or undefined protocol status",
    "5.1": "invalid command",
    "5.2": "syntax error",
    "5.3": "too many recipients",
    "5.4": "invalid command arguments",
    "5.5": "wrong protocol version",
    "5.6": "authentication exchange line is too long",
    "6.0": "other or undefined media error",
    "6.1": "media not supported",
    "6.2": "conversion required and prohibited",
    "6.3": "conversion required but not supported",
    "6.4": "conversion with loss performed",
    "6.5": "conversion failed",
    "6.6": "message content not available",
    "6.7": "non-ASCII addresses not permitted for that sender/recipient",
    "6.8": "UTF-8 string reply is required, but not permitted by the SMTP client",
    "6.9": "UTF-8 header message cannot be transferred to one or more recipients",
    "6.10": "non-ASCII address cannot be delivered",
    "7.0": "other or undefined security status",
    "7.1": "delivery not authorized, message refused",
    "7.2": "mailing list expansion prohibited",
    "7.3": "security conversion required but not possible",
    "7.4": "security features not supported",
    "7.5": "cryptographic failure",
    "7.6": "cryptographic algorithm not supported",
    "7.7": "message integrity failure",
    "7.8": "authentication credentials invalid",
    "7.9": "authentication mechanism is too weak",
    "7.10": "encryption needed",
    "7.11": "encryption required for requested authentication mechanism",
    "7.12": "a password transition is needed",
    "7.13": "user account disabled",
    "7.14": "trust relationship required",
    "7.15": "priority level is too low",
    "7.16": "message is too big for the specified priority",
    "7.17": "mailbox owner has changed",
    "7.18": "domain owner has changed",
    "7.19": "RRVS test cannot be completed",
    "7.20": "no passing DKIM signature found",
    "7.21": "no acceptable DKIM signature found",
    "7.22": "no valid author-matched DKIM signature found",
    "7.23": "SPF validation failed",
    "7.24": "SPF validation error",
    "7.25": "reverse DNS validation failed",
    "7.26": "multiple authentication checks failed",
    "7.27": "sender address has null MX",
    "7.28": "mail flood detected",
    "7.29": "ARC validation failure",
    "7.30": "REQUIRETLS support required",
}
_SUBJECT = {
    "0": "other or undefined status",
    "1": "addressing status",
    "2": "mailbox status",
    "3": "mail system status",
    "4": "network or routing status",
    "5": "mail delivery protocol status",
    "6": "message content or media status",
    "7": "security or policy status",
}
_STATUS_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")


def status_meaning(status: str) -> str:
    """'5.1.1' -> 'Bad destination mailbox address'; a detail nobody registered is described by its
    subject ('5.7.509' -> 'Security or policy status'); '' for anything that is not a status code."""
    m = _STATUS_RE.match(status or "")
    if not m:
        return ""
    _, subject, detail = m.groups()
    text = _DETAIL.get(f"{subject}.{detail}") or _SUBJECT.get(subject, "")
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------- boilerplate

# Sentences real MTAs put around every report: they say nothing about a recipient. Lowercase,
# matched against whitespace-collapsed text. Sources: Postfix bounce templates, Exim deliver.c
# (bounce and warning messages), OpenSMTPD bounce.c, sendmail, qmail, Exchange/Office 365, Gmail,
# DragonFly Mail Agent, IIS SMTP, Sun/Oracle Messaging Server, Mirapoint-style delay notices.
_BOILERPLATE = (
    # Exim
    "this message was created automatically by mail delivery software",
    "could not be delivered to one or more of its recipients",
    "has not yet been delivered to one or more of its recipients",
    "the following address(es) failed",
    "the following address(es) have yet to be delivered",
    "no action is required on your part",
    "delivery attempts will continue for some time",
    "this warning may be repeated at intervals",
    "eventually the mail delivery software will give up",
    "the message will be returned to you",
    "the message identifier is",
    "the subject of the message is",
    "the date of the message is",
    "to which the message has not yet been delivered",
    "this is a copy of the message, including all the headers",
    "this is a permanent error",
    # Postfix
    "this is the mail system at host",
    "this is the postfix program at host",
    "i'm sorry to have to inform you that your message could not",
    "i'm sorry to have to inform you that the message returned",
    "it's attached below",
    "for further assistance, please send mail to",
    "for further assistance, please contact",
    "if you do so, please include this problem report",
    "delete your own text from the attached returned message",
    "this is a warning only",
    "you do not need to resend your message",
    "your message could not be delivered for more than",
    "it will be retried until it is",
    "enclosed is the mail delivery report that you requested",
    "your message was successfully delivered to the destination",
    # OpenSMTPD
    "this is the mailer-daemon, please do not reply",
    "an error has occurred while attempting to deliver a message for",
    "a message is delayed for more than",
    "please note that this is only a temporary failure report",
    "the message is kept in the queue for up to",
    "you do not need to re-send the message",
    "below is a copy of the original message",
    "your message was successfully delivered to these recipients",
    "your message was relayed to these recipients",
    # sendmail
    "this is a warning message only",
    "the original message was received at",
    "the following addresses had permanent fatal errors",
    "the following addresses had transient non-fatal errors",
    "transcript of session follows",
    "warning: message still undelivered after",
    "will keep trying until message is",
    "message will be deleted from queue",
    "unsent message follows",
    "original message follows",
    # qmail
    "this is the qmail-send program at",
    "i'm afraid i wasn't able to deliver your message to the following addresses",
    "this is a permanent error; i've given up",
    "sorry it didn't work out",
    "below this line is a copy of the message",
    # Exchange, Office 365, IIS SMTP
    "delivery has failed to these recipients or groups",
    "delivery is delayed to these recipients or groups",
    "the server has tried to deliver this message, without success",
    "please try sending this message again",
    "if the problem continues, contact your helpdesk",
    "diagnostic information for administrators",
    "generating server:",
    "receiving server:",
    "original message headers",
    "this message hasn't been delivered yet",
    "delivery will continue to be attempted",
    "the server will keep trying to deliver this message",
    "you'll be notified if the message can't be delivered",
    "for more tips to help fix this issue",
    "for more tips to resolve this issue",
    "this is an automatically generated delivery status notification",
    "delivery to the following recipients has been delayed",
    "delivery to the following recipients failed",
    "delivery to the following recipient failed",
    "delivery to the following recipient has been delayed",
    "this is only a notification about a delay",
    "there is no need to resend your message",
    "the following recipients have not yet received your message",
    "the server will continue trying for up to",
    "the mail system will continue to try to deliver your message",
    # Gmail
    "google tried to deliver your message, but it was rejected by the",
    "we recommend contacting the other email provider",
    "message will be retried for",
    # others (DragonFly Mail Agent, Messaging Server, Yahoo, mail.ru, generic)
    "there was an error delivering your mail to",
    "message headers follow",
    "this report relates to a message you sent with the following header fields",
    "your message cannot be delivered to the following recipients",
    "delivery attempt history for your mail",
    "sorry, we were unable to deliver your message to the following address",
    "this is an automatically generated message",
    "this is an automated message",
    "please do not reply to this",
    "do not reply to this e-mail",
    "do not reply to this email",
    "рекомендуем вам проверить корректность указания адресов получателей",
)
_BOILERPLATE_RE = re.compile("|".join(re.escape(p) for p in sorted(_BOILERPLATE, key=len, reverse=True)))
# a sentence that is only one of these says nothing (signatures, greetings, headings)
_EMPTY_SENTENCES = {"the mail system", "the postfix program", "hi!", "hi", "hello", "thanks,", "thank you",
                    "original message", "google groups", "delivery status notification"}

# labels in front of a sentence's words that matter: dropped, the words kept
_LABEL_RE = re.compile(
    r"(?i)^(?:technical details of (?:permanent|temporary) failure:|"
    r"the error that the other server returned was:|the response (?:from the remote server )?was:|"
    r"the reason for the problem:|(?:[\w-]+ )?reason:|diagnostic[- ]code:|error message below:|"
    r"remote host said:|for the following reason:|because:|error:)\s*")
# Exim notes where an address came from: about the address, not about the failure
_GENERATED_RE = re.compile(r"(?i)\((?:ultimately )?generated from [^()]{0,300}\)|"
                           r"^[ \t]*(?:ultimately )?generated (?:from|by) \S+[ \t]*$", re.M)

# a sentence ends at . ! ? before a capital; a line ends one unless the next line goes on in
# lowercase (MTAs wrap their sentences: "could not\nbe delivered", "more of its\nrecipients")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[^.][.!?])\s+(?=[A-Z\"'(<*#\-])")  # "<a@b>... User unknown" is one
# a line that starts a new statement even in lowercase: "key: value", an address
_NEW_STATEMENT_RE = re.compile(r"^(?:[a-z][\w-]*(?: [\w-]+){0,3}:\s|[^\s@]+@[^\s@]+)")


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, whitespace collapsed, wrapped lines joined."""
    logical: list[str] = []
    joinable = False
    for line in text.split("\n"):
        s = " ".join(line.split())
        if not s:
            joinable = False
            continue
        if joinable and s[0].islower() and not _NEW_STATEMENT_RE.match(s):
            logical[-1] += " " + s
        else:
            logical.append(s)
        joinable = True
    out: list[str] = []
    for chunk in logical:
        out.extend(_SENTENCE_SPLIT_RE.split(chunk))
    return out


def is_boilerplate(sentence: str) -> bool:
    """True for a sentence MTAs put around every report (or a greeting, a signature)."""
    low = sentence.lower()
    return bool(_BOILERPLATE_RE.search(low)) or low.strip(" .:-*#") in _EMPTY_SENTENCES


def clean(text: str) -> str:
    """The words of ``text`` without boilerplate sentences, Exim's "generated from" notes and
    labels, whitespace collapsed (not yet cut to REASON_MAX)."""
    if not text:
        return ""
    text = _GENERATED_RE.sub(" ", text)
    text = " ".join(_LABEL_RE.sub("", s) for s in sentences(text) if not is_boilerplate(s))
    # only the separators splitting left behind ("<a@b>: reason" -> ": reason"): the server's own
    # first and last characters stay (a reason may start with "=" or end with ">")
    return text.lstrip(" :;,>").rstrip(" :;,")


# --------------------------------------------------------------------------- does it say something

# words are split at these; a word holding "@" is an address (split, not matched: a pattern around
# "@" rescans a long run of letters from every position)
_TOKEN_SPLIT_RE = re.compile(r"[\s<>()\[\]\"',;:]+")
_CODE_RE = re.compile(r"(?<![\d.])(?:[245]\.\d{1,3}\.\d{1,3}|[245]\d\d)(?!\d)")
_FAIL_CODE_RE = re.compile(r"(?<![\d.])(?:[45]\.\d{1,3}\.\d{1,3}|[45]\d\d)(?![\d.])")
_WORD_RE = re.compile(r"[^\W\d_]{2,}")
_NOISE_WORDS = {
    "smtp", "esmtp", "lmtp", "dns", "rfc", "host", "said", "from", "the", "and", "for", "with", "reason",
    "postfix", "unix", "notes", "rcpt", "mail", "data", "action", "status", "delayed", "failed", "delivered",
    "relayed", "expanded", "recipient", "address", "original", "final", "hello", "hallo", "bonjour", "dear",
    "hi", "remote", "mta", "server", "error", "code", "diagnostic", "generated", "ultimately", "subject",
    "date", "in", "out", "to", "of", "on", "at", "by", "is", "be", "as", "or", "an", "it", "we", "my", "via",
    "orcpt", "ok",
}
_SPECIFIC_RE = re.compile(
    r"(?i)unknown|no such|not exist|n't exist|not found|not listed|invalid|illegal|disabled|inactive|"
    r"full|quota|exceed|too (?:large|big|many|long)|size|denied|refused|reject|block|blacklist|blocklist|"
    r"spam|virus|policy|dmarc|spf|dkim|reverse dns|ptr|relay|timed? ?out|unreachable|no route|connect|"
    r"network|lookup|mx\b|greylist|graylist|try again|try later|temporar|deferred|unavailable|"
    r"not accepting|not available|suspended|frozen|moved|not permitted|permission|not allowed|member|"
    r"authenticat|rate limit|throttl|congestion|disk|i/o|loop|hop count|expir|queue|"
    r"giving up|gave up|given up|undeliverable|unable to|could not|couldn't|cannot|can't|not delivered|"
    r"failure|problem|misconfig|certificate|tls|ssl|resolve|domain|mailbox|account|user|"
    r"エラー|存在|見つか|一杯|容量|拒否")
LINE_MAX = 2000  # of one line looked at: reasons are short, and hostile lines must stay cheap


def says_something(text: str) -> bool:
    """True when ``text`` holds words beyond addresses, codes, protocol noise and greetings."""
    if not text:
        return False
    text = text[:REASON_MAX * 3]  # what could be shown, and some
    rest = " ".join(t for t in _TOKEN_SPLIT_RE.split(text) if "@" not in t)
    rest = _CODE_RE.sub(" ", rest)
    return any(w.lower() not in _NOISE_WORDS for w in _WORD_RE.findall(rest))


def _score(text: str, labelled: bool = False) -> int:
    """0 nothing, 1 some words, 2 words about a failure, 3 a failure reply (4xx/5xx code) or a
    labelled reason ("Reason: ...") with words."""
    if not says_something(text):
        return 0
    text = text[:REASON_MAX * 3]
    if labelled or _FAIL_CODE_RE.search(text):
        return 3
    return 2 if _SPECIFIC_RE.search(text) else 1


# --------------------------------------------------------------------------- the recipient's entry

_HEADERISH_RE = re.compile(
    r"(?i)^\s*(?:to|cc|bcc|from|sender|reply-to|subject|date|message-id|in-reply-to|references|return-path|"
    r"received|x-[\w-]+|delivered-to|envelope-to|mail from)\s*:")
_SEPARATOR_RE = re.compile(r"^\s*[-=_*#~]{3,}")
# what may stand in front of the address when the line is the recipient's own entry
_ENTRY_PREFIX_RE = re.compile(
    r"(?i)^[\s*\-•>]*(?:(?:rcpt to|recipient(?: address)?|original address|final-recipient|"
    r"original-recipient|address|target mail address|could not be delivered to)[ \t]*(?::[ \t]*)?)?"
    r"(?:rfc822;[ \t]*)?[<\"(\[]*$")
# a line that starts another recipient's entry ("<b@x>: ...", "  b@x", "554 <b@x>... Host unknown")
_LINE_ADDRESS_RE = re.compile(
    r"^\s*(?:[245]\d\d[ -])?[<\"]?([^\s<>@\"]{1,256}@[^\s<>\"]{1,256}?)[>\"]?(?=[\s:;,.)\]]|$)")
ENTRY_MAX_LINES = 6
MAX_OCCURRENCES = 12


class Notification:
    """The human-readable part of a report, indexed once for every recipient's lookups."""

    def __init__(self, text: str):
        self.text = text or ""
        self.low = self.text.lower()
        self.lines = self.text.split("\n")
        self.starts = []
        pos = 0
        for line in self.lines:
            self.starts.append(pos)
            pos += len(line) + 1

    def _entry(self, i: int, start: int, address: str) -> str:
        """Line ``i`` from ``start`` and the lines that continue it: up to a blank line, a
        separator, a header or another recipient's entry."""
        parts = [self.lines[i][start:start + LINE_MAX]]
        for nxt in self.lines[i + 1:i + ENTRY_MAX_LINES]:
            if not nxt.strip() or _SEPARATOR_RE.match(nxt) or _HEADERISH_RE.match(nxt):
                break
            m = _LINE_ADDRESS_RE.match(nxt)
            if m and m.group(1).lower().strip(".") != address:
                break
            parts.append(nxt[:LINE_MAX])
        return "\n".join(parts)

    def entry(self, address: str) -> str:
        """The cleaned words about ``address``: the best of the places that name it (where it
        starts a line, what follows it with the lines continuing it; else the line naming it);
        '' when none says anything."""
        address = (address or "").lower()
        if not address:
            return ""
        best, best_score = "", 0
        at = self.low.find(address)
        for _ in range(MAX_OCCURRENCES):
            if at < 0:
                break
            line_no = bisect.bisect_right(self.starts, at) - 1
            line = self.lines[line_no]
            col = at - self.starts[line_no]
            if not _HEADERISH_RE.match(line):
                own = _ENTRY_PREFIX_RE.match(line[:col]) is not None
                words = clean(self._entry(line_no, col + len(address) if own else 0, address))
                score = _score(words)
                if score > best_score:
                    best, best_score = words, score
                    if score == 3:
                        break
            at = self.low.find(address, at + len(address))
        return best

    def best_sentence(self, minimum: int = 2) -> str:
        """The first sentence of the notification that says most about a failure (a failure reply
        or a labelled reason beats failure words), boilerplate excluded; '' when none scores
        ``minimum``."""
        kept = [line[:LINE_MAX] for line in self.lines[:400]
                if not (_HEADERISH_RE.match(line) or _SEPARATOR_RE.match(line))]
        best, best_score = "", 0
        for sentence in sentences("\n".join(kept)):
            if is_boilerplate(sentence):
                continue
            words = clean(sentence)
            score = _score(words, labelled=bool(_LABEL_RE.search(sentence)))
            if score > best_score:
                best, best_score = words, score
                if score == 3:
                    break
        return best[:REASON_MAX] if best_score >= minimum else ""


def choose(*candidates: str) -> str:
    """The first candidate that says something, cleaned and cut to REASON_MAX."""
    for c in candidates:
        words = clean((c or "")[:LINE_MAX * 2])
        if says_something(words):
            return words[:REASON_MAX]
    return ""


# --------------------------------------------------------------------------- final or not

# The server stopped trying: the message left its queue. Matched on the server's words only.
_GAVE_UP_RE = re.compile(
    r"(?i)(?<!not )(?<!never )(?<!not yet )\b(?:giving up|gave up|given up|not going to try again|will not be retried|no (?:more|further) "
    r"(?:delivery )?(?:attempts|retries)|stopped trying|has been in the queue too long|too long in (?:the )?queue|"
    r"could not be delivered for too long|cannot send message for \d+ (?:day|hour))")
_EXPIRED_MESSAGE_RE = re.compile(
    r"(?i)\b(?:(?:envelope|message|mail|delivery time|queue lifetime|lifetime|ttl|time to live)(?: has)? expired|"
    r"expired (?:in|from|on) (?:the )?queue|queue\.expired|retry time(?:out)? (?:exceeded|expired)|"
    r"retry timeout exceeded|(?:message|envelope|queue|delivery time|delivery|retry) expiry (?:reached|exceeded|time reached))")
# "will expire in 2 days" is a delay; "expired", "expiry reached" or "expiry exceeded" is not
_EXPIRY_RE = re.compile(r"(?i)(?<!not )(?<!not yet )\b(?:expired\b|expiry\b(?!\s+(?:in|on|at|will|date)\b))")
# something else that expired: a certificate, a password, an account, a domain
_OTHER_EXPIRY_RE = re.compile(
    r"(?i)\b(?:certificat\w*|cert|password|passwd|account|subscription|licen[cs]e|key|credentials?|token|"
    r"domain|registration)\W+(?:\w+\W+){0,3}?expir|\bexpir\w*\W+(?:\w+\W+){0,3}?(?:certificat|cert\b|"
    r"password|account|subscription|licen[cs]e|key\b|credential|token|domain|registration)")


def says_final(words: str, status: str = "") -> bool:
    """True when the server's ``words`` (a diagnostic, the recipient's entry) say it gave up on the
    message; with status 4.4.7 (delivery time expired) any mention of expiry counts, unless what
    expired is a certificate, password, account or domain."""
    if not words:
        return False
    words = words[:LINE_MAX * 2]
    if _GAVE_UP_RE.search(words):
        return True
    if _OTHER_EXPIRY_RE.search(words):
        return False
    return bool(_EXPIRED_MESSAGE_RE.search(words)) or (status == "4.4.7" and bool(_EXPIRY_RE.search(words)))
