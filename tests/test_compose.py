"""Rendering: template variables, the notes section, strict undefined, HTML escaping, MIME, header safety."""

from __future__ import annotations

import email
import email.policy
import os
from pathlib import Path

import pytest
from plan_helpers import base_plan, write_plan

from relcomm_tui.compose import RenderError, TextRenderer, render, render_path
from relcomm_tui.compose.notes import find_section
from relcomm_tui.plan import Plan, load_plan


def first(plan: Plan, communique_id: str):
    communique = plan.communique(communique_id)
    group, recipient = plan.audience(communique)[0]
    return communique, group, recipient


def render_first(plan: Plan, communique_id: str, **kwargs):
    return render(plan, *first(plan, communique_id), **kwargs)


def test_templates_see_release_group_recipient_sender_communique_and_notes(tmp_path: Path) -> None:
    template = ("{{ release.name }}|{{ release.version }}|{{ release.date }}|{{ group.id }}|{{ group.name }}|"
                "{{ recipient.name }}|{{ recipient.email }}|{{ recipient.company }}|{{ recipient.phone }}|"
                "{{ communique.id }}|{{ communique.channel }}|{{ sender.name }}|{{ sender.address }}|"
                "{{ groups | map(attribute='id') | join(',') }}\n{{ notes }}")
    data = base_plan()
    data["release"]["date"] = __import__("datetime").date(2026, 11, 26)
    plan = load_plan(write_plan(tmp_path, data, {"announce.md.j2": template}))
    rendered = render_first(plan, "announce")
    head, notes = rendered.text.split("\n", 1)
    assert head == ("Vega|2.0.0|2026-11-26|customers|Customers|Ada Lovelace|ada@acme.example.com|Acme||"
                    "announce|email|Vega Releases|releases@vega.example.com|customers")
    assert notes.strip() == "- New: faster search."
    assert rendered.subject == "Vega 2.0.0 is out"


def test_notes_section_stops_at_the_next_heading_of_its_level() -> None:
    text = ("# Changelog\n\n## v4.2.0 - 2026-11-26\n\n### Added\n- a\n\n```\n## 4.1.0 in a code block\n```\n"
            "## 4.2.0-rc1\n- rc\n## 14.2.0\n- other\n")
    body, line = find_section(text, "4.2.0")
    assert line == 3
    assert body == "### Added\n- a\n\n```\n## 4.1.0 in a code block\n```"
    assert find_section(text, "4.2.0-rc1") == ("- rc", 11)
    assert find_section(text, "4.2") == ("", None)


def test_missing_notes_section_renders_empty(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path, files={"CHANGELOG.md": "# Changelog\n\n## 1.0.0\n- old\n"}))
    rendered = render_first(plan, "announce")
    assert rendered.text.rstrip().endswith("is ready for Acme.")


def test_undefined_variable_names_it_and_its_template_line(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path, files={"announce.md.j2": "Hello,\n\n{{ recipient.nickname }} is here\n"}))
    with pytest.raises(RenderError) as caught:
        render_first(plan, "announce")
    error = caught.value
    assert error.kind == "undefined"
    assert "`recipient.nickname` is undefined" in error.message
    assert "company" in error.message  # what it does have
    assert error.file == str(tmp_path / "announce.md.j2")
    assert error.line == 3


def test_syntax_error_has_the_template_line(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path, files={"announce.md.j2": "a\nb\n{% if release.name %}\nno end\n"}))
    with pytest.raises(RenderError) as caught:
        render_first(plan, "announce")
    assert caught.value.kind == "syntax"
    assert caught.value.file == str(tmp_path / "announce.md.j2")
    assert caught.value.line == 3  # the block that was never closed
    assert "endif" in caught.value.hint


def test_inline_body_errors_point_into_plan_toml(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][1]["body"] = "Hello {{ recipient.name }},\nsecond line\n{{ oops }}\n"
    plan_file = write_plan(tmp_path, data)
    plan = load_plan(plan_file)
    with pytest.raises(RenderError) as caught:
        render_first(plan, "ops-notice")
    lines = plan_file.read_text(encoding="utf-8").splitlines()
    assert caught.value.file == str(plan_file)
    assert "{{ oops }}" in lines[caught.value.line - 1]


def test_data_is_escaped_in_html_and_raw_html_is_not_passed_through(tmp_path: Path) -> None:
    csv_text = 'name,email,company\n<script>alert(1)</script>,ada@acme.example.com,"<b>Acme</b>"\n'
    template = "Hi {{ recipient.name }} from {{ recipient.company }}\n\n<div onclick=x>raw</div>\n"
    plan = load_plan(write_plan(tmp_path, files={"customers.csv": csv_text, "announce.md.j2": template}))
    rendered = render_first(plan, "announce")
    assert "<script>" not in rendered.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "<b>" not in rendered.html and "&lt;b&gt;Acme&lt;/b&gt;" in rendered.html
    assert "<div" not in rendered.html and "&lt;div onclick=x&gt;raw&lt;/div&gt;" in rendered.html
    assert rendered.text.startswith("Hi <script>alert(1)</script> from <b>Acme</b>")  # text part is verbatim
    assert rendered.html.startswith("<!DOCTYPE html>") and "<title>Vega 2.0.0 is out</title>" in rendered.html


def test_mime_structure_and_headers(tmp_path: Path) -> None:
    data = base_plan()
    data["receipts"] = {"read_receipts": True}
    data["communiques"][0]["reply_to"] = "Answers <answers@vega.example.com>"
    data["communiques"][0]["headers"] = {"X-Campaign": "vega-2"}
    plan = load_plan(write_plan(tmp_path, data))
    rendered = render_first(plan, "announce", message_id="<abc.123@vega.example.com>")
    message = rendered.message
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert message.get_body(("plain",)).get_content() == rendered.text
    assert message["Message-ID"] == "<abc.123@vega.example.com>"
    assert message["From"] == "Vega Releases <releases@vega.example.com>"
    assert message["To"] == "Ada Lovelace <ada@acme.example.com>"
    assert message["Reply-To"] == "Answers <answers@vega.example.com>"
    assert message["List-Id"] == "Vega <releases.vega.example.com>"
    assert message["X-Relcomm-Communique"] == "announce"
    assert message["X-Relcomm-Release"] == "2.0.0"
    assert message["X-Campaign"] == "vega-2"
    assert message["Disposition-Notification-To"] == "receipts@vega.example.com"
    assert message["Date"] is not None and "Auto-Submitted" not in message
    assert rendered.headers["Subject"] == "Vega 2.0.0 is out"
    wire = message.as_bytes(policy=email.policy.SMTP)
    assert b"\r\n" in wire and b"\n" not in wire.replace(b"\r\n", b"")


def test_generated_message_id_uses_the_sender_domain(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path))
    message = render_first(plan, "announce").message
    assert message["Message-ID"].endswith("@vega.example.com>")


def test_read_receipt_only_when_asked(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][1]["read_receipt"] = True
    plan = load_plan(write_plan(tmp_path, data))
    assert "Disposition-Notification-To" not in render_first(plan, "announce").message
    assert render_first(plan, "ops-notice").message["Disposition-Notification-To"] == "receipts@vega.example.com"


def test_non_ascii_names_and_subjects_are_encoded(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["subject"] = "Überraschung: {{ release.name }} ✓"
    csv_text = "name,email,company\nZoë Ærø,zoe@acme.example.com,Acme\n"
    plan = load_plan(write_plan(tmp_path, data, {"customers.csv": csv_text}))
    wire = render_first(plan, "announce").message.as_bytes(policy=email.policy.SMTP)
    head = wire.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and b"=?utf-8?" in head
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert parsed["Subject"] == "Überraschung: Vega ✓"
    assert parsed["To"].addresses[0].display_name == "Zoë Ærø"


def test_line_break_in_a_csv_name_is_header_injection(tmp_path: Path) -> None:
    csv_text = 'name,email,company\n"Ada\r\nBcc: victim@evil.example",ada@acme.example.com,Acme\n'
    plan = load_plan(write_plan(tmp_path, files={"customers.csv": csv_text}))
    with pytest.raises(RenderError) as caught:
        render_first(plan, "announce")
    assert caught.value.message.startswith("header injection")
    assert caught.value.file == str(tmp_path / "customers.csv")
    assert caught.value.line == 2


def test_line_break_in_a_rendered_subject_is_header_injection(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["subject"] = "News for {{ recipient.company }}"
    csv_text = 'name,email,company\nAda,ada@acme.example.com,"Acme\nBcc: victim@evil.example"\n'
    plan = load_plan(write_plan(tmp_path, data, {"customers.csv": csv_text}))
    with pytest.raises(RenderError) as caught:
        render_first(plan, "announce")
    assert "header injection: the subject contains a line break" in caught.value.message
    data["communiques"][0]["subject"] = "Two{{ '\\r\\n' }}lines"
    plan = load_plan(write_plan(tmp_path, data))
    with pytest.raises(RenderError, match="header injection"):
        render_first(plan, "announce")


def test_webhook_renders_without_recipient_and_says_why_when_a_template_wants_one(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"].append({"id": "chat", "to": ["ops"], "channel": "webhook", "url": "http://127.0.0.1:9/h",
                                "body": "{{ release.name }} {{ release.version }} for {{ groups[0].name }}"})
    plan = load_plan(write_plan(tmp_path, data))
    rendered = render(plan, plan.communique("chat"), None, None)
    assert rendered.payload == b"Vega 2.0.0 for Operations"
    assert rendered.message is None and rendered.html is None
    data["communiques"][-1]["body"] = "hi {{ recipient.name }}"
    plan = load_plan(write_plan(tmp_path, data))
    with pytest.raises(RenderError) as caught:
        render(plan, plan.communique("chat"), None, None)
    assert "`recipient` is undefined" in caught.value.message
    assert "posts once" in caught.value.hint


def test_publish_is_a_standalone_page_and_manual_is_text(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"] += [
        {"id": "page", "to": ["customers"], "channel": "publish", "subject": "Vega {{ release.version }}",
         "path": "www/{{ release.version }}.html", "body": "# Vega\n\n{{ notes }}"},
        {"id": "call", "to": ["ops"], "channel": "manual", "instructions": "Call {{ recipient.name }}"},
    ]
    plan = load_plan(write_plan(tmp_path, data))
    page = render(plan, plan.communique("page"), None, None)
    assert page.payload == page.html.encode() and "<h1>Vega</h1>" in page.html and "<li>New: faster search.</li>" in page.html
    assert render_path(plan, plan.communique("page")) == "www/2.0.0.html"
    call = render_first(plan, "call")
    assert call.text == "Call Noor Haddad" and call.message is None


def test_sandbox_refuses_internals(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path, files={"announce.md.j2": "{{ recipient._values }}{{ ''.__class__.__mro__ }}"}))
    with pytest.raises(RenderError) as caught:
        render_first(plan, "announce")
    assert caught.value.kind in ("undefined", "security")


def test_a_loaded_plan_renders_its_snapshot_and_a_reload_sees_the_edit(tmp_path: Path) -> None:
    """Issue 10 item 4: what was validated is what is sent. The files a plan uses are read once, at
    load; an edit on disk (even one that keeps the mtime) changes nothing until the plan is loaded again."""
    plan = load_plan(write_plan(tmp_path))
    template, notes = tmp_path / "announce.md.j2", tmp_path / "CHANGELOG.md"
    assert render_first(plan, "announce").text.startswith("Hello Ada Lovelace")
    for path, text in ((template, "Bye {{ recipient.name }}\n{{ notes }}"), (notes, "## 2.0.0\n- EDITED\n")):
        stat = path.stat()
        path.write_text(text, encoding="utf-8")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    again = render_first(plan, "announce").text
    assert again.startswith("Hello Ada Lovelace") and "faster search" in again and "EDITED" not in again
    assert TextRenderer(plan, plan.communique("announce")).render_text(*first(plan, "announce")[1:])[1] == again
    reloaded = load_plan(plan.path)
    assert render_first(reloaded, "announce").text == "Bye Ada Lovelace\n- EDITED"
    assert reloaded.digest != plan.digest


def test_text_renderer_matches_render(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path))
    communique, group, recipient = first(plan, "announce")
    full = render(plan, communique, group, recipient)
    assert TextRenderer(plan, communique).render_text(group, recipient) == (full.subject, full.text)


def test_multiline_inline_body_errors_point_at_their_line(tmp_path: Path) -> None:
    plan_file = write_plan(tmp_path)
    text = plan_file.read_text(encoding="utf-8").replace(
        'body = "Hello {{ recipient.name }}, {{ release.version }} is live.\\n"',
        'body = """\nHello {{ recipient.name }},\n\n{{ missing_thing }}\n"""')
    plan_file.write_text(text, encoding="utf-8")
    plan = load_plan(plan_file)
    with pytest.raises(RenderError) as caught:
        render_first(plan, "ops-notice")
    assert plan_file.read_text(encoding="utf-8").splitlines()[caught.value.line - 1] == "{{ missing_thing }}"
    assert "`missing_thing` is undefined" in caught.value.message


def test_variables_written_alone_print_sensibly(tmp_path: Path) -> None:
    template = ("{{ recipient }}|{{ release }}|{{ group }}|{{ sender }}|{% if recipient.phone %}phone{% else %}none{% endif %}"
                "|{{ communique.subject }}")
    plan = load_plan(write_plan(tmp_path, files={"announce.md.j2": template}))
    assert render_first(plan, "announce").text == (
        "Ada Lovelace <ada@acme.example.com>|Vega 2.0.0|Customers|Vega Releases <releases@vega.example.com>|none"
        "|Vega 2.0.0 is out")
