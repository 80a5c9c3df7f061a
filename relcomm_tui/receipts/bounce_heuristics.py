"""Generic heuristics for non-standard bounces, auto-replies and complaints.

Nothing here knows about particular files: only general signals that real MTAs
put in their notifications (sender names, subjects, typical sentences, the
``<address>: reason`` layouts, enhanced status codes, ...).

Why one long module: the signals are weighed against each other (a subject, a sender and a
sentence together make a bounce); kept side by side, a new signal is judged against the rest.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from . import reasons

# --------------------------------------------------------------------------- text utils

# Tags never span a "<": "[^<>]" keeps every match attempt short, so hostile text such as
# "<a<a<a..." stays linear (with "[^>]" each "<" scanned to the end of the text).
_TAG_RE = re.compile(r"<br\s*/?>|</?(p|div|tr|li|h\d|table)\b[^<>]*>|<[^<>]+>", re.I)
_BLOCK_OPEN_RE = re.compile(r"<(script|style)\b", re.I)
_BLOCK_CLOSE_RE = {tag: re.compile(rf"</{tag}\s*>", re.I) for tag in ("script", "style")}
_ADDR_TAG_RE = re.compile(r"<(?=[^<>\s]{1,256}@[^<>\s]{1,256}>)")


def _drop_script_style(text: str) -> str:
    """Remove <script>/<style> blocks. Once a closing tag is missing, later openings of that
    tag cannot be closed either: remembering it keeps this linear."""
    out: list[str] = []
    pos = 0
    closable = {"script": True, "style": True}
    for m in _BLOCK_OPEN_RE.finditer(text):
        tag = m.group(1).lower()
        if m.start() < pos or not closable[tag]:
            continue
        close = _BLOCK_CLOSE_RE[tag].search(text, m.end())
        if close is None:
            closable[tag] = False
            continue
        out.append(text[pos:m.start()])
        pos = close.end()
    out.append(text[pos:])
    return "".join(out)


def html_to_text(text: str) -> str:
    def rep(m: re.Match) -> str:
        tag = m.group(0).lower()
        if tag.startswith("<br") or m.group(1):
            return "\n"
        return " "

    # keep <addr@host> style addresses: html-escaped ones come back via unescape
    text = _ADDR_TAG_RE.sub("&lt;", text)
    text = _TAG_RE.sub(rep, _drop_script_style(text))
    return html.unescape(text)


# A match may only start where no local-part character precedes: else a long run of them with no
# "@" (a line of "|||" or "###") is rescanned from every position, in quadratic time.
ADDR_RE = re.compile(
    r"(?<![A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-])"
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+[A-Za-z0-9\-]*[A-Za-z0-9]"
    r"|[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+)*@[A-Za-z0-9\-]+)"
)
STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
SMTP_CODE_RE = re.compile(r"(?<![\d.\-])([245]\d\d)(?:[\s\-]|$)")

SYSTEM_LOCALS = {
    "mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster", "mail.daemon", "maildaemon",
    "mdaemon", "nobody", "root", "double-bounce", "bounce", "bounces", "mailer", "daemon",
    "mail-delivery-system", "mail_delivery_system", "noreply", "no-reply", "abuse",
}


def find_status(text: str) -> str:
    m = STATUS_RE.search(text or "")
    return ".".join(m.groups()) if m else ""


def trim(text: str, n: int = 300) -> str:
    return " ".join((text or "").split())[:n]


# --------------------------------------------------------------------------- subjects are not statuses

# "Orion 5.1.1 released": a release announcement's subject holds version numbers shaped like status
# codes, and bounces quote it ("The subject of the message is: ...", "Undeliverable: ...").
_SUBJECT_LINE_RE = re.compile(r"(?im)^[ \t>]*(?:the subject of the message is|subject)[ \t]*:[^\n]*")
_VERSIONISH_RE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def subjects_of(report_subject: str, parts, body: str = "", notice_end: int = 0) -> list[str]:
    """Subjects that may be quoted in a report: its own and the returned message's (attached, or
    inline in ``body`` after ``notice_end``, the end of the notification)."""
    found = [report_subject or ""]
    for h in getattr(parts, "original_headers", []):
        found.append(h.get("subject", ""))
    if body and notice_end:
        found.append(inline_original_headers(body, notice_end).get("subject", ""))
    out = []
    for subject in found:
        subject = " ".join(str(subject).split())[:500]
        if _VERSIONISH_RE.search(subject) and subject not in out:
            out.append(subject)
    return out


def mask_subjects(text: str, subjects: list[str]) -> str:
    """``text`` with status-shaped numbers inside quoted subjects (and Subject lines) blanked out,
    same length (positions stay valid)."""
    if not text or not _VERSIONISH_RE.search(text):
        return text
    blank = lambda m: re.sub(r"\d", "x", m.group(0))  # noqa: E731
    text = _SUBJECT_LINE_RE.sub(blank, text)
    for subject in subjects:
        words = subject.split()
        if len(words) < 2:  # a bare version would mask the real status everywhere
            continue
        pattern = r"\s+".join(re.escape(w) for w in words)
        text = re.sub(pattern, blank, text, flags=re.I)
    return text


# --------------------------------------------------------------------------- DSN fields in text


_DSN_FIELD_RE = re.compile(r"(?im)^[ \t]*(Final-Recipient|Original-Recipient)[ \t]*:[ \t]*(?:\r?\n[ \t]+)?\S")
_DSN_ACTION_RE = re.compile(r"(?im)^[ \t]*(Action|Status)[ \t]*:[ \t]*(?:\r?\n[ \t]+)?\S")


def has_dsn_fields(text: str) -> bool:
    return bool(text and _DSN_FIELD_RE.search(text) and _DSN_ACTION_RE.search(text))


def enrich_dsn_recipients(recips: list, bodytext: str, weak: set[int] | None = None,
                          subjects: list[str] | None = None) -> None:
    """Complete DSN recipients from the human-readable part: a status that did not come from the
    remote server (no code in Diagnostic-Code) is replaced by the remote server's code quoted next
    to the recipient; a "delayed" recipient whose server words say it gave up is failed; every
    recipient gets a reason (see ``reasons``: Diagnostic-Code, its own entry, the status meaning)."""
    weak = weak or set()
    note = reasons.Notification(cut_original(bodytext or ""))
    low = note.low
    alone = len(recips) == 1
    for idx, r in enumerate(recips):
        generic = not r.status or (idx in weak and r.status.endswith(".0.0"))
        if generic:
            i = low.find(r.address) if r.address else -1
            st = find_status(mask_subjects(note.text[i:i + 600], subjects or [])) if i >= 0 else ""
            if st and (not r.action or st[0] == {"delivered": "2"}.get(r.action, st[0])):
                if not (r.action == "failed" and st[0] == "2"):
                    r.status = st
        entry = note.entry(r.address)
        if not entry and r.final_recipient and r.final_recipient != r.address:
            entry = note.entry(r.final_recipient)
        if r.action == "delayed" and (reasons.says_final(r.diagnostic, r.status)
                                      or reasons.says_final(entry, r.status)):
            r.action = "failed"  # e.g. OpenSMTPD: "Action: delayed", 4.4.7, "Envelope expired"
        r.diagnostic = explain(r.status, r.diagnostic, entry, note if alone else None)


def explain(status: str, diagnostic: str, entry: str, note: "reasons.Notification | None") -> str:
    """A recipient's reason: the server's diagnostic, else its entry in the notification, else what
    the status code means; the notification's most telling line (when the report is about this
    recipient only) before a meaning that says no more than "other or undefined"."""
    chosen = reasons.choose(diagnostic, entry)
    if chosen:
        return chosen
    meaning = reasons.status_meaning(status)
    if meaning and not status.endswith(".0"):
        return meaning
    return (note.best_sentence() if note is not None else "") or meaning


# --------------------------------------------------------------------------- JSON notifications


def _iter_json_objects(text: str, limit: int = 20):
    if not text or "{" not in text:
        return
    dec = json.JSONDecoder(strict=False)
    pos = 0
    tries = 0
    while tries < limit:
        i = text.find("{", pos)
        if i < 0:
            return
        tries += 1
        try:
            obj, end = dec.raw_decode(text, i)
        except ValueError:
            pos = i + 1
            continue
        yield obj
        pos = end


def _unwrap_sns(obj: Any, depth: int = 0) -> Any:
    if depth < 3 and isinstance(obj, dict) and isinstance(obj.get("Message"), str):
        try:
            return _unwrap_sns(json.loads(obj["Message"]), depth + 1)
        except ValueError:
            return obj
    return obj


def json_notification(text: str):
    """Amazon SES style JSON bounce/complaint/delivery notifications.

    Returns (kind, recipients-as-dicts, original_message_id) or None."""
    if not text or '"' not in text or "{" not in text:
        return None
    res = _json_notification(text)
    if res is None and "\n " in text:
        # long lines folded by a relay ("!\n " sendmail style, or plain continuation)
        res = _json_notification(re.sub(r"!?\r?\n ", "", text))
    return res


def _json_notification(text: str):
    for obj in _iter_json_objects(text):
        obj = _unwrap_sns(obj)
        if not isinstance(obj, dict):
            continue
        ntype = str(obj.get("notificationType") or obj.get("eventType") or "").lower()
        if ntype not in ("bounce", "complaint", "delivery", "deliverydelay"):
            continue
        mail = obj.get("mail") if isinstance(obj.get("mail"), dict) else {}
        omid = mail.get("messageId")
        for h in mail.get("headers") or []:
            if isinstance(h, dict) and str(h.get("name", "")).lower() == "message-id":
                m = re.search(r"<([^<>]+)>", str(h.get("value", "")))
                omid = m.group(1) if m else str(h.get("value", "")).strip("<> ")
        recs = []
        if ntype == "bounce":
            b = obj.get("bounce") or {}
            btype = str(b.get("bounceType", "")).lower()
            for r in b.get("bouncedRecipients") or []:
                if not isinstance(r, dict):
                    continue
                addr = _bare(r.get("emailAddress", ""))
                diag = str(r.get("diagnosticCode", "") or "")
                status = find_status(str(r.get("status", ""))) or find_status(diag)
                action = str(r.get("action", "") or "").lower() or (
                    "delayed" if btype == "transient" else "failed")
                if action not in ("failed", "delayed"):
                    action = "failed"
                recs.append(dict(address=addr, final_recipient=addr, action=action, status=status,
                                 diagnostic=trim(diag)))
            return "dsn", recs, omid
        if ntype == "deliverydelay":
            d = obj.get("deliveryDelay") or {}
            for r in d.get("delayedRecipients") or []:
                if isinstance(r, dict):
                    addr = _bare(r.get("emailAddress", ""))
                    diag = str(r.get("diagnosticCode", "") or "")
                    recs.append(dict(address=addr, final_recipient=addr, action="delayed",
                                     status=find_status(str(r.get("status", ""))) or find_status(diag),
                                     diagnostic=trim(diag)))
            return "dsn", recs, omid
        if ntype == "delivery":
            d = obj.get("delivery") or {}
            resp = str(d.get("smtpResponse", "") or "")
            for a in d.get("recipients") or []:
                addr = _bare(str(a))
                recs.append(dict(address=addr, final_recipient=addr, action="delivered",
                                 status=find_status(resp) or "2.0.0", diagnostic=trim(resp)))
            return "dsn", recs, omid
        c = obj.get("complaint") or {}
        for r in c.get("complainedRecipients") or []:
            if isinstance(r, dict):
                addr = _bare(r.get("emailAddress", ""))
                recs.append(dict(address=addr, final_recipient=addr, action="complained", status="",
                                 diagnostic=trim(str(c.get("complaintFeedbackType", "abuse")))))
        return "complaint", recs, omid
    return None


def _bare(value: str) -> str:
    m = re.search(r"<([^<>]+@[^<>]+)>", value or "")
    if m:
        return m.group(1).strip().lower()
    m = ADDR_RE.search(value or "")
    return m.group(1).lower() if m else (value or "").strip().lower()


# --------------------------------------------------------------------------- classification signals

_BOUNCE_SUBJECT_RE = re.compile(
    r"undeliver|undelivered|non[- ]?deliver|delivery (status|failure|failed|notification|problem|report)|"
    r"returned mail|return(ed|ing)? to sender|failure notice|mail delivery (failed|failure|subsystem|system)|"
    r"delivery has failed|could not be delivered|couldn.t be delivered|not delivered|message not delivered|"
    r"delivery error|mail system error|warning: could not send|delayed mail|delivery delay|"
    r"delivery status|failed delivery|delivery unsuccessful|rejected|unable to deliver|"
    r"mail failure|bounce|nondeliverable|permanent error|message delivery|error sending|"
    r"Deliver(y|ed)? ?fail|ndr\b|mail could not|problem delivering|notification d.?.?tat de la remise|"
    r"unzustellbar|onbestelbaar|non recapitabile|no se puede entregar|retour de courrier|"
    r"warning: message \S+ delayed|still being retried|"
    # Japanese carriers and MTAs: "mail error notice", "delivery error", "undelivered", "returned"
    r"メールエラー|配信エラー|配送エラー|送信エラー|エラー通知|不達|未達|返送|配信できません|届きませんでした",
    re.I,
)

_BOUNCE_BODY_RE = re.compile(
    r"could not be delivered|couldn.t be delivered|was not delivered|permanent (fatal )?error|"
    r"undeliverable|delivery (has )?failed|delivery to the following recipient|"
    r"following address(es)?( had permanent fatal errors| failed)|wasn.t able to deliver|"
    r"unable to deliver|user unknown|unknown user|no such user|mailbox (?:is )?(?:unavailable|full|not found)|"
    r"message was not delivered|message could not be|returned to sender|delivery failure|"
    r"failed to deliver|message you sent|rejected your message|delivery attempts|"
    r"could not deliver|not be delivered|transcript of session|hasn.t been delivered|"
    r"ha(?:ve|s) not yet been delivered|delivery is delayed|has been delayed|delivery to [^\n]{0,200}?delayed|"
    r"recipient address rejected|address rejected|over quota|quota exceeded|"
    r"the following (message|recipient|address)|below this line is a copy",
    re.I,
)


def _local(addr: str) -> str:
    return (addr or "").split("@", 1)[0].lower()


def looks_like_bounce(headers: dict, subject: str, from_address: str, body: str, parts) -> bool:
    score = 0
    frm = headers.get("from", "").lower()
    if _local(from_address) in ("mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster", "maildaemon",
                                "post_master", "post-master") \
            or "mailer-daemon" in frm or "mail delivery" in frm or "postmaster" in frm \
            or "mailer daemon" in frm or "delivery subsystem" in frm:
        score += 2
    score_from = score
    if _BOUNCE_SUBJECT_RE.search(subject or ""):
        score += 2
    rp = headers.get("return-path", "")
    if rp.strip() in ("<>", "") and "return-path" in headers:
        score += 1
    if _BOUNCE_BODY_RE.search((body or "")[:20000]):
        score += 1
    if STATUS_RE.search((body or "")[:20000]) or SMTP_CODE_RE.search((body or "")[:20000]):
        score += 1
    if parts.original_headers:
        score += 1
    if headers.get("x-failed-recipients"):
        score += 3
    system_from = score_from > 0
    personal = (not system_from and (headers.get("in-reply-to") or headers.get("references"))
                and not headers.get("auto-submitted", "").lower().startswith("auto")
                and rp.strip() != "<>")
    # a person replying about a delivery problem is not a bounce: ask for more evidence
    return score >= (5 if personal else 3)


_AUTO_SUBJECT_RE = re.compile(
    r"^\s*(auto(matic)?[ _-]?(reply|response|antwort|answer)|auto:|out of (the )?office|"
    r"away from (the |my )?(office|desk)|vacation|on leave|abwesenheit|absence|"
    r"r[ée]ponse automatique|respuesta autom|risposta automatica|automatisch antwoord|"
    r"autosvar|automaattinen|i am (currently )?(away|out)|away until|ooo\b|out-of-office)",
    re.I,
)


def looks_like_auto_reply(headers: dict, subject: str) -> bool:
    auto = headers.get("auto-submitted", "").lower()
    if auto.startswith("auto-replied"):
        return True
    if headers.get("x-autoreply") or headers.get("x-autorespond") or headers.get("x-autoresponse"):
        return True
    prec = headers.get("precedence", "").lower()
    if "auto_reply" in prec or "auto-reply" in prec:
        return True
    if headers.get("x-auto-response-suppress") and _AUTO_SUBJECT_RE.search(subject or ""):
        return True
    return bool(_AUTO_SUBJECT_RE.search(subject or ""))


_COMPLAINT_SUBJECT_RE = re.compile(r"\b(complaint|abuse report|spam report|feedback loop|unsubscribe)\b", re.I)


def looks_like_complaint(headers: dict, subject: str, body: str, parts) -> bool:
    subj = subject or ""
    if not _COMPLAINT_SUBJECT_RE.search(subj):
        return False
    low = (body or "")[:5000].lower()
    if "unsubscribe" in subj.lower():
        return "to unsubscribe from" in low or headers.get("auto-submitted", "").lower().startswith("auto")
    # forwarded message marked as spam by a recipient (e.g. provider complaint feeds)
    return bool(parts.original_headers) and ("complaint" in subj.lower() or "abuse" in subj.lower())


# --------------------------------------------------------------------------- mailing lists

# Headers that list managers (fml, Mailman, ezmlm, Majordomo, LISTSERV, Sympa) put on what they send.
_LIST_HEADERS = ("x-mlserver", "x-ml-name", "x-ml-info", "x-mailman-version", "list-id", "mailing-list",
                 "x-mailing-list", "list-post", "x-listserver", "x-list-name", "x-sympa-to", "x-loop")
_LIST_ADMIN_RE = re.compile(r"(?i)^(?:owner-.+|.+-(?:admin|owner|request|bounces?|ctl|approval)|mailman|"
                            r"majordomo|listserv|sympa|fml|ezmlm)$")
_LIST_REFUSAL_RE = re.compile(
    r"(?i)not (?:a )?member|are not member|non-?members? (?:are )?not allowed|only (?:list )?members|"
    r"members only|not (?:allowed|permitted|authori[sz]ed) to post|post(?:ing)? (?:is |was )?(?:rejected|"
    r"refused|denied|not allowed)|(?:message|post|request) (?:was |has been )?rejected|has been rejected|"
    r"loop alert|mail loop|duplicated? message-id")


def list_refusal(headers: dict, subject: str, from_address: str, body: str) -> list[dict]:
    """A mailing list manager refusing a post (not a member, a loop): the list address did not get
    the message. Recipients as dicts, [] when this is not such a notice."""
    if not any(h in headers for h in _LIST_HEADERS) or not _LIST_ADMIN_RE.match(_local(from_address)):
        return []
    notice = cut_original(body or "")[:5000]
    if not (_LIST_REFUSAL_RE.search(subject or "") or _LIST_REFUSAL_RE.search(reasons.clean(notice))):
        return []
    parties = {a.lower() for k in ("from", "to", "reply-to", "sender") for a in ADDR_RE.findall(headers.get(k, ""))}
    address = ""
    for m in re.finditer(r"<(" + ADDR_RE.pattern + r")>", notice):
        a = m.group(1).lower()
        if a not in parties and not _LIST_ADMIN_RE.match(_local(a)):
            address = a
            break
    if not address:
        m = re.search(r"<mailto:(" + ADDR_RE.pattern + r")", headers.get("list-post", ""), re.I)
        address = m.group(1).lower() if m else ""
    if not address:
        return []
    note = reasons.Notification(notice)
    why = reasons.choose(note.best_sentence(minimum=1), subject or "")
    return [dict(address=address, final_recipient=address, action="failed", status="", diagnostic=why)]


# --------------------------------------------------------------------------- bounce body extraction

# Where the returned message starts: a line holding one of these words ...
_SEP_WORDS_RE = re.compile(
    r"(?i)below this line is a copy|copy of the (?:original )?message|(?:this is a )?copy of your message|"
    r"original message (?:follows|headers|is attached)|message headers? follows?|headers of the original message|"
    r"header of the original message|(?:original|returned|undelivered|unsent) message (?:follows|below|headers)|"
    r"original mail (?:as )?follows|original message header")
# ... a rule ("----- Original message -----") naming it, or a line that only names it
_RULE_CHARS = frozenset("-=_*#|")
_RULE_LEAD = frozenset(" \t>|")
_SEP_RULE_WORDS_RE = re.compile(r"(?i)original|returned|undelivered|unsent|copy of|message text|message body|"
                                r"headers? (?:of|follow)|header of")
_SEP_LINE_RE = re.compile(
    r"(?im)^[ \t>|]*(?:(?:original|returned|undelivered|unsent) message:?[ \t]*\r?$|content-type: message/rfc822)")


def _starts_with_rule(line: str) -> bool:
    """True when ``line`` is [ \\t>|]* then two or more of -=_*#| (a rule), decided in one pass: as one
    regex the two overlapping classes backtrack in quadratic time on a long line of '|' or '-'."""
    j = 0
    while j < len(line) and line[j] in _RULE_LEAD:
        j += 1
    if line[j:j + 2] and len(line[j:j + 2]) == 2 and all(c in _RULE_CHARS for c in line[j:j + 2]):
        return True
    if j >= 1 and line[j - 1] == "|" and j < len(line) and line[j] in _RULE_CHARS:
        return True
    return "||" in line[:j]


def _returned_message_start(text: str) -> int:
    """Offset of the line that starts the returned message, len(text) when none does."""
    end = len(text)
    m = _SEP_WORDS_RE.search(text)
    if m:
        end = text.rfind("\n", 0, m.start()) + 1
    m = _SEP_LINE_RE.search(text, 0, end)
    if m:
        end = min(end, m.start())
    pos = 0
    while pos < end:
        nl = text.find("\n", pos)
        stop = len(text) if nl < 0 else nl
        line = text[pos:stop]
        if _starts_with_rule(line) and _SEP_RULE_WORDS_RE.search(line):
            return pos
        pos = stop + 1
    return end


_HEADER_LINE_RE = re.compile(
    r"(?im)^(Return-Path|Received|Message-ID|From|Date|Subject|To|MIME-Version|Content-Type|"
    r"DKIM-Signature|X-[A-Za-z-]+|Delivered-To|Reply-To|Cc)\s*:"
)


def cut_original(text: str) -> str:
    """The notification part of a bounce body: everything before the returned message."""
    end = _returned_message_start(text)
    # a block of 3+ mail header lines in a row also starts the returned message
    lines = text[:end].split("\n")
    run = 0
    pos = 0
    start_of_run = 0
    for line in lines:
        if _HEADER_LINE_RE.match(line):
            if run == 0:
                start_of_run = pos
            run += 1
            if run >= 3:
                end = start_of_run
                break
        elif line[:1] in (" ", "\t") and run:
            pass
        else:
            run = 0
        pos += len(line) + 1
    return text[:end]


def inline_original_headers(body: str, start: int) -> dict:
    """Headers of a message returned inline (after the notification text)."""
    out: dict = {}
    last = None
    seen_header = False
    for line in body[start:start + 20000].split("\n"):
        line = line.rstrip("\r")
        m = re.match(r"[ \t>]*([A-Za-z][A-Za-z0-9\-]*):[ \t]*(.*)$", line)
        if m and not line[:1].isspace():
            k = m.group(1).lower()
            last = k if k not in out else None
            if last:
                out[k] = m.group(2)
            seen_header = True
        elif line[:1] in (" ", "\t") and last:
            out[last] += " " + line.strip()
        elif not line.strip() and seen_header:
            break
    return out


_SKIP_CONTEXT_RE = re.compile(
    r"(mail from|envelope-from|return-path|sender|reply-to|message-id|from:|from <|"
    r"\bby\b|received:|smtp\.mailfrom|header\.from|header\.i|for <)\s*[:=]?\s*<?$",
    re.I,
)


def _candidate_addresses(text: str) -> list[tuple[str, int]]:
    out = []
    for m in ADDR_RE.finditer(text):
        addr = m.group(1).strip(".").lower()
        if "." not in addr.split("@", 1)[1]:
            continue
        before = text[max(0, m.start() - 24):m.start()]
        line_start = text.rfind("\n", 0, m.start()) + 1
        line_prefix = text[line_start:m.start()]
        if _SKIP_CONTEXT_RE.search(before.rstrip("<\"' ")) or _SKIP_CONTEXT_RE.search(before):
            continue
        if re.match(r"\s*(message-id|in-reply-to|references|received|return-path|from|sender|"
                    r"reply-to|dkim|authentication-results|x-)", line_prefix, re.I):
            continue
        # inside a message-id <...@...> with no other context
        if text[m.end():m.end() + 1] == ">" and re.search(r"message-?id", before, re.I):
            continue
        out.append((addr, m.start()))
    return out


# An address standing at the start of its line, then the rest of the line. (No two neighbouring
# quantifiers over the same characters: "[ \t]*(...)?[ \t]*" backtracks cubically on a line of tabs.)
_STRONG_LINE_RE = re.compile(
    r"(?m)^[ \t]*(?:(?:RCPT TO:|Recipient:|Address:|Original-Recipient:|Final-Recipient:)[ \t]*)?"
    r"(?:rfc822;[ \t]*)?<?" + ADDR_RE.pattern + r">?([^\n]*)$",
    re.I,
)


def _entry_tail(rest: str) -> str | None:
    """What follows a line-leading address when the line is that address's entry ("<a@b>: reason",
    "a@b... User unknown", "a@b (expanded from ...)", "a@b  reason"); None when it is not."""
    rest = rest.rstrip("\r")
    words = rest.lstrip(" \t")
    if not words or words.startswith((":", "...", "(", ";", ",")):
        return words
    if rest[:1] in (" ", "\t") and "@" not in rest:
        return words
    return None
_SENDER_LINE_RE = re.compile(r"sender ok|sender address|mail from|is the sender|from:", re.I)


def extract_bounce_recipients(body: str, headers: dict, parts, from_address: str) -> list[dict]:
    text = cut_original(body or "")
    excluded = set()
    for k in ("from", "to", "return-path", "reply-to", "sender"):
        for m in ADDR_RE.finditer(headers.get(k, "")):
            excluded.add(m.group(1).lower())
    for h in parts.original_headers:
        for k in ("from", "return-path", "sender", "reply-to"):
            for m in ADDR_RE.finditer(h.get(k, "")):
                excluded.add(m.group(1).lower())

    failed_hdr = headers.get("x-failed-recipients", "")
    cands = _candidate_addresses(text)
    bounce_from = {m.group(1).lower() for m in ADDR_RE.finditer(headers.get("from", ""))}
    addrs: list[str] = []
    # 1. addresses standing at the start of a line ("<a@b>:", "a@b", "<a@b>... User unknown")
    for m in _STRONG_LINE_RE.finditer(text):
        tail = _entry_tail(m.group(2))
        if tail is None:
            continue
        a = m.group(1).strip(".").lower()
        if a in bounce_from or _local(a) in SYSTEM_LOCALS or "." not in a.split("@", 1)[1]:
            continue
        if _SENDER_LINE_RE.search(tail):
            continue
        if a not in addrs:
            addrs.append(a)
    # 2. any other address in the notification that is not one of the parties
    if not addrs:
        for a, _ in cands:
            if a in excluded or _local(a) in SYSTEM_LOCALS:
                continue
            if a not in addrs:
                addrs.append(a)
    if failed_hdr:
        hdr_addrs = [m.group(1).lower() for m in ADDR_RE.finditer(failed_hdr)]
        if hdr_addrs:
            addrs = hdr_addrs
    if not addrs:
        # last resort: the original message's recipients (attached or inline)
        for h in list(parts.original_headers) + [inline_original_headers(body or "", len(text))]:
            for m in ADDR_RE.finditer(h.get("to", "")):
                a = m.group(1).lower()
                if a not in addrs and a not in excluded:
                    addrs.append(a)
    if not addrs:
        return []

    note = reasons.Notification(text)
    subjects = subjects_of(headers.get("subject", ""), parts, body or "", len(text))
    said = reasons.clean(text[:20000]).lower()  # the notification without its boilerplate
    delay_said = bool(_DELAY_RE.search(text[:20000]) or _DELAY_SUBJECT_RE.search(headers.get("subject", "")))
    # "I've given up", "too long in the queue", "Returned mail: Cannot send message for 5 days"
    final_said = reasons.says_final(text[:20000]) or reasons.says_final(headers.get("subject", ""))
    permanent_said = bool(_PERMANENT_RE.search(said))
    recs = []
    where: dict[str, list[int]] = {}  # candidate -> its positions; cands are in text order
    for i, (c, _) in enumerate(cands):
        where.setdefault(c, []).append(i)
    for a in addrs:
        mine = where.get(a, [])
        positions = [cands[i][1] for i in mine]
        start = positions[0] if positions else 0
        # context: from the address to the next different candidate address
        first = mine[0] + 1 if mine else 0
        end = len(text)
        for c, p in cands[first:]:
            if p > start and c != a:
                end = p
                break
        end = min(end, start + 1500)
        ctx = text[start:end]
        entry = note.entry(a)
        status = find_failure_status(mask_subjects(entry, subjects)) or find_failure_status(
            mask_subjects(ctx, subjects))
        if not status:
            for p in positions[1:]:
                status = find_failure_status(mask_subjects(text[p:p + 600], subjects))
                if status:
                    break
        if not status and len(addrs) == 1:  # anywhere in the notice: only when it is about one recipient
            status = find_failure_status(mask_subjects(text, subjects))
        # the server's reply for this recipient decides; then what the whole notice says
        m = FAIL_SMTP_CODE_RE.search(entry or ctx)
        kind = status[:1] or (m.group(1)[:1] if m else "")
        if reasons.says_final(entry, status):
            action = "failed"
        elif kind == "5":
            action = "failed"
        elif kind == "4":
            action = "failed" if final_said else "delayed"
        else:
            action = "delayed" if delay_said and not permanent_said and not final_said else "failed"
        diag = explain(status, "", entry or _diagnostic(ctx, a), note if len(addrs) == 1 else None)
        recs.append(dict(address=a, final_recipient=a, action=action, status=status, diagnostic=diag))
    return recs


_DELAY_RE = re.compile(
    r"(?i)delay|will (?:continue|keep) trying|not yet been delivered|not yet received|temporar|will retry|"
    r"will be retried|still being retried|still trying|warning only|warning message only|"
    r"do not need to re-?send|no need to resend|will continue to (?:try|attempt)")
_DELAY_SUBJECT_RE = re.compile(r"(?i)delay|warning|still being retried|will retry")
_PERMANENT_RE = re.compile(r"permanent|fatal|could not be delivered|undeliverable|failed|rejected|unknown|"
                           r"not delivered|no such|does not exist")
FAIL_STATUS_RE = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
FAIL_SMTP_CODE_RE = re.compile(r"(?<![\d.\-])([45]\d\d)(?:[\s\-]|$)")


def find_failure_status(text: str) -> str:
    """The first 4.x.x or 5.x.x status in ``text``: a 2.x.x one there acknowledged a command of the
    transcript (250 2.1.5 for RCPT TO), it says nothing about the failure."""
    m = FAIL_STATUS_RE.search(text or "")
    return ".".join(m.groups()) if m else ""


def _diagnostic(ctx: str, addr: str) -> str:
    """The first line after the recipient's address that carries a reply code or failure words."""
    for line in ctx.split("\n")[:40]:
        s = line.strip()[:reasons.LINE_MAX]
        if SMTP_CODE_RE.search(s) or STATUS_RE.search(s) or re.search(
                r"unknown|does not exist|full|quota|rejected|denied|refused|invalid|disabled|blocked", s, re.I):
            return s
    return ""
