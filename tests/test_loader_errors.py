"""A plan that cannot be loaded is one PlanError that says where (file, line, key path) and how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest
from plan_helpers import base_plan, write_plan

from relcomm_tui.plan import PlanError, load_plan


def load_error(path: Path) -> PlanError:
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    return caught.value


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    text = plan.read_text(encoding="utf-8").replace('name = "Vega"', "name = Vega")
    plan.write_text(text, encoding="utf-8")
    error = load_error(plan)
    assert error.message.startswith("TOML syntax error")
    assert error.location.line == lines_of(plan).index("name = Vega") + 1
    assert error.location.column == 8
    assert "quotes" in error.hint


def test_wrong_type_names_the_key_and_its_line(tmp_path: Path) -> None:
    data = base_plan()
    data["transport"]["smtp"]["port"] = "twenty-five"
    plan = write_plan(tmp_path, data)
    error = load_error(plan)
    assert error.location.keypath == "transport.smtp.port"
    assert error.location.line == lines_of(plan).index('port = "twenty-five"') + 1
    assert "'twenty-five'" in error.message
    assert error.hint == "write a whole number without quotes"


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][1]["audience"] = data["communiques"][1].pop("to")
    plan = write_plan(tmp_path, data)
    error = load_error(plan)
    assert error.message == "unknown key `audience`"
    assert error.location.keypath == "communiques[1].audience"
    assert lines_of(plan)[error.location.line - 1].startswith("audience = [")
    assert "did you mean `to`?" in error.hint


def test_missing_plan_file(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nope.toml")
    assert error.message == "no such file"
    assert error.location.file == tmp_path / "nope.toml"
    assert "plan.toml" in error.hint


def test_folder_without_a_plan(tmp_path: Path) -> None:
    error = load_error(tmp_path)
    assert "folder with no plan" in error.message
    assert "plan.toml" in error.hint


def test_missing_members_csv_points_at_the_plan_key(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    (tmp_path / "customers.csv").unlink()
    error = load_error(plan)
    assert error.message.startswith("members file not found")
    assert error.location.file == plan
    assert error.location.keypath == "stakeholders[0].members"
    assert lines_of(plan)[error.location.line - 1] == 'members = "customers.csv"'
    assert "relative to the plan" in error.hint


def test_members_path_that_is_a_folder(tmp_path: Path) -> None:
    data = base_plan()
    data["stakeholders"][0]["members"] = "people"
    (tmp_path / "people").mkdir()
    error = load_error(write_plan(tmp_path, data))
    assert "is a folder, not a file" in error.message
    assert error.location.keypath == "stakeholders[0].members"
    assert error.hint == "name the file inside it"


def test_csv_without_email_column(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, files={"customers.csv": "name,mail\nAda,ada@acme.example.com\n"})
    error = load_error(plan)
    assert error.location.file == tmp_path / "customers.csv"
    assert error.location.line == 1
    assert "no 'email' column" in error.message and "name, mail" in error.message
    assert "name,email" in error.hint


def test_csv_ragged_row_names_its_line(tmp_path: Path) -> None:
    csv_text = "name,email,company\nAda,ada@acme.example.com,Acme\nSmith, Grace,grace@globex.example.com,Globex\n"
    error = load_error(write_plan(tmp_path, files={"customers.csv": csv_text}))
    assert error.location.file == tmp_path / "customers.csv"
    assert error.location.line == 3
    assert error.message == "this row has 4 fields, the header has 3"
    assert "quote values that contain commas" in error.hint


def test_plan_that_is_not_utf8(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    text = plan.read_text(encoding="utf-8").replace('name = "Vega"', 'name = "Véga"')
    plan.write_bytes(text.encode("latin-1"))
    error = load_error(plan)
    assert error.message == "not UTF-8 text (byte 0xe9)"
    assert error.location.line == lines_of_bytes(plan).index(b'name = "V\xe9ga"') + 1
    assert error.location.column == len('name = "V') + 1
    assert "UTF-8" in error.hint


def lines_of_bytes(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_members_csv_that_is_not_utf8(tmp_path: Path) -> None:
    csv_bytes = "name,email\nAda,ada@acme.example.com\nJürgen,j@acme.example.com\n".encode("latin-1")
    error = load_error(write_plan(tmp_path, files={"customers.csv": csv_bytes}))
    assert error.location.file == tmp_path / "customers.csv"
    assert error.location.line == 3
    assert error.location.column == 2
    assert "iconv" in error.hint


def test_literal_password_is_refused(tmp_path: Path) -> None:
    data = base_plan()
    data["transport"]["smtp"]["password"] = "hunter2"
    plan = write_plan(tmp_path, data)
    error = load_error(plan)
    assert error.message == "a secret is written in the plan"
    assert error.location.keypath == "transport.smtp.password"
    assert lines_of(plan)[error.location.line - 1] == 'password = "hunter2"'
    assert "hunter2" not in str(error)
    assert '{ env = "RELCOMM_SMTP_PASSWORD" }' in error.hint


def test_error_text_has_place_and_hint(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["channel"] = "slack"
    error = load_error(write_plan(tmp_path, data))
    text = str(error)
    assert text.startswith(f"{tmp_path / 'plan.toml'}:{error.location.line}: communiques[0].channel: ")
    assert 'channel = "webhook" with preset = "slack"' in text
