"""Step and action arguments are checked against the capability's input model.

A misspelled argument (`window_minute`) used to be ignored, and the default
used, so a playbook quietly searched one hour instead of four.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from soc_agent.errors import PlaybookError
from soc_agent.playbooks import PlaybookValidationError, load_playbooks
from soc_agent.runtime.control import connector_catalog
from tests.unit.playbooks.pb_helpers import write

BOOK = """
name: ssh-logins
version: "1"
description: test playbook
priority: 100
match: 'size(alert.users) > 0'
steps:
  - id: logins
    connector: event_store
    capability: search
    args:
      entity_type: user
      value: "${alert.users[0]}"
      around: "${alert.created_at}"
      {window}
score:
  rules:
    - id: many
      when: steps.logins.ok && steps.logins.result.total > 5
      points: 60
      reason: many logins
respond:
  - id: tell
    action: notify
    target: {type: user, value: "${alert.users[0]}"}
    args: {args}
    notify_at: 10
"""

NOTIFY = '{subject: "logins of ${alert.users[0]}"}'


def _errors(tmp_path: Path, window: str, args: str = NOTIFY) -> list[PlaybookError]:
    path = write(tmp_path, "ssh.yaml", BOOK.replace("{window}", window).replace("{args}", args))
    with pytest.raises(PlaybookValidationError) as caught:
        load_playbooks([path], catalog=connector_catalog())
    return caught.value.errors


def test_correct_arguments_load(tmp_path: Path) -> None:
    text = BOOK.replace("{window}", "window_minutes: 240").replace("{args}", NOTIFY)
    path = write(tmp_path, "ssh.yaml", text)
    (book,) = load_playbooks([path], catalog=connector_catalog())
    assert book.steps[0].args["window_minutes"] == 240


def test_a_misspelled_step_argument_is_named_with_a_suggestion(tmp_path: Path) -> None:
    (error,) = _errors(tmp_path, "window_minute: 240")
    assert error.field == "steps[0].args.window_minute"
    assert error.line == 14  # the line of window_minute
    assert "unknown argument of event_store.search 'window_minute'" in str(error)
    assert "did you mean 'window_minutes'?" in str(error)


def test_a_literal_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    (error,) = _errors(tmp_path, "window_minutes: four hours")
    assert error.field == "steps[0].args.window_minutes"
    assert "event_store.search: Input should be a valid integer" in str(error)


def test_a_missing_required_argument_is_named(tmp_path: Path) -> None:
    errors = _errors(tmp_path, "window_minutes: 240", args="{channel: soc}")
    assert [e.field for e in errors] == ["respond[0].args"]
    assert "notify needs the argument 'subject'" in str(errors[0])


def test_an_action_argument_the_executor_sets_is_refused(tmp_path: Path) -> None:
    args = '{subject: "s", reason: "because the playbook says so"}'
    (error,) = _errors(tmp_path, "window_minutes: 240", args=args)
    assert error.field == "respond[0].args.reason"
    assert "'reason' is set by the executor" in str(error)


def test_a_misspelled_action_argument_is_named(tmp_path: Path) -> None:
    (error,) = _errors(tmp_path, "window_minutes: 240", args='{subject: "s", severty: high}')
    assert error.field == "respond[0].args.severty"
    assert "did you mean 'severity'?" in str(error)
