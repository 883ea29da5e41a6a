"""Loader errors name file, line and field; every problem in every file is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc_agent.errors import PlaybookError
from soc_agent.playbooks import (
    CapabilitySpec,
    PlaybookValidationError,
    load_playbook_file,
    load_playbooks,
)
from tests.unit.playbooks.pb_helpers import write

GOOD = """
name: malware-on-endpoint
version: "1"
description: test playbook
priority: 100
match: 'size(alert.file_hashes) > 0'
steps:
  - id: host_asset
    connector: asset_inventory
    capability: lookup_asset
    args: {type: host, value: "${alert.hosts[0]}"}
  - id: hash_intel
    connector: threat_intel
    capability: lookup
    for_each: alert.file_hashes
    args: {indicator: "${item}", type: file_hash}
score:
  rules:
    - id: hash-malicious
      when: 'steps.hash_intel.result.exists(r, r.result.verdict == "malicious")'
      points: 60
      reason: a hash is malicious
respond:
  - id: isolate
    action: isolate_host
    target: {type: host, value: "${alert.hosts[0]}"}
    execute_at: 90
    propose_at: 60
    requires: [host_asset]
"""


def _errors(path: Path, **kwargs: object) -> list[PlaybookError]:
    with pytest.raises(PlaybookValidationError) as info:
        load_playbooks([path], **kwargs)  # type: ignore[arg-type]
    return info.value.errors


def _one(path: Path, **kwargs: object) -> PlaybookError:
    errors = _errors(path, **kwargs)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def test_good_playbook_loads(tmp_path: Path) -> None:
    pb = load_playbook_file(write(tmp_path, "good.yaml", GOOD))
    assert pb.name == "malware-on-endpoint"
    assert [s.id for s in pb.steps] == ["host_asset", "hash_intel"]
    assert pb.respond[0].requires == ["host_asset"]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yaml", GOOD.replace("priority: 100", "priority: [100"))
    err = _one(path)
    assert err.file == str(path)
    assert err.line is not None
    assert 5 <= err.line <= 7
    assert "YAML syntax error" in str(err)
    assert str(err).startswith(f"{path}:{err.line}")


def test_unknown_key_is_an_error_with_line_field_and_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "typo.yaml", GOOD.replace("    for_each: alert", "    for_eech: alert"))
    err = _one(path)
    assert err.field == "steps[1].for_eech"
    assert err.line == 14
    assert "unknown key 'for_eech'" in str(err)
    assert "did you mean 'for_each'" in str(err)


def test_missing_required_key(tmp_path: Path) -> None:
    path = write(
        tmp_path, "nomatch.yaml", GOOD.replace("match: 'size(alert.file_hashes) > 0'\n", "")
    )
    err = _one(path)
    assert err.field == "match"
    assert "required" in str(err)


def test_bad_cel_in_when_names_line_and_field(tmp_path: Path) -> None:
    text = GOOD.replace(
        '    args: {indicator: "${item}", type: file_hash}',
        "    args: {indicator: \"${item}\", type: file_hash}\n    when: 'size(alert.hosts) >'",
    )
    path = write(tmp_path, "badwhen.yaml", text)
    err = _one(path)
    assert err.field == "steps[1].when"
    assert err.line == 16
    assert "syntax error at line 1, column" in str(err)


def test_bad_cel_in_args_template(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "badargs.yaml",
        GOOD.replace('${alert.hosts[0]}"}\n  - id: hash', '${alert.hosts[0}"}\n  - id: hash'),
    )
    err = _one(path)
    assert err.field == "steps[0].args.value"
    assert err.line == 10


def test_unknown_variable_and_function_are_caught(tmp_path: Path) -> None:
    text = GOOD.replace(
        "'size(alert.file_hashes) > 0'", "'size(alrt.file_hashes) > 0 && alert.title.shout()'"
    )
    errors = _errors(write(tmp_path, "names.yaml", text))
    messages = sorted(str(e) for e in errors)
    assert any("unknown variable 'alrt'" in m and "[match]" in m for m in messages)
    assert any("unknown function 'shout'" in m for m in messages)


def test_unknown_step_in_needs(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    for_each: alert.file_hashes",
        "    needs: [host_assets]\n    for_each: alert.file_hashes",
    )
    err = _one(write(tmp_path, "needs.yaml", text))
    assert err.field == "steps[1].needs[0]"
    assert err.line == 14
    assert "unknown step 'host_assets'" in str(err)
    assert "did you mean 'host_asset'" in str(err)


def test_dependency_cycle(tmp_path: Path) -> None:
    text = GOOD.replace(
        '    args: {type: host, value: "${alert.hosts[0]}"}\n  - id: hash_intel',
        '    args: {type: host, value: "${alert.hosts[0]}"}\n    needs: [hash_intel]\n'
        "  - id: hash_intel\n    needs: [host_asset]",
    )
    err = _one(write(tmp_path, "cycle.yaml", text))
    assert "dependency cycle: host_asset -> hash_intel -> host_asset" in str(err)
    assert err.field == "steps[0].needs"
    assert err.line == 11


def test_thresholds_must_be_ordered(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    execute_at: 90\n    propose_at: 60", "    execute_at: 50\n    propose_at: 60"
    )
    err = _one(write(tmp_path, "thresholds.yaml", text))
    assert err.field == "respond[0].execute_at"
    assert err.line == 26
    assert "execute_at (50) must be >= propose_at (60)" in str(err)


def test_step_must_need_the_step_it_reads(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    for_each: alert.file_hashes",
        "    when: 'steps.host_asset.result.criticality == \"high\"'\n"
        "    for_each: alert.file_hashes",
    )
    err = _one(write(tmp_path, "needs-read.yaml", text))
    assert err.field == "steps[1].when"
    assert err.line == 14
    assert "reads steps.host_asset but step 'hash_intel' does not need 'host_asset'" in str(err)
    fixed = text.replace("    when: 'steps", "    needs: [host_asset]\n    when: 'steps", 1)
    assert load_playbook_file(write(tmp_path, "needs-ok.yaml", fixed)).steps[1].needs == [
        "host_asset"
    ]


def test_score_and_respond_may_read_any_declared_step_only(tmp_path: Path) -> None:
    text = GOOD.replace(
        "steps.hash_intel.result.exists", "steps.hash_intell.result.exists"
    ).replace("requires: [host_asset]", "requires: [host]")
    errors = _errors(write(tmp_path, "refs.yaml", text))
    fields = {e.field: str(e) for e in errors}
    assert "reads steps.hash_intell, which is not a step" in fields["score.rules[0].when"]
    assert "unknown step 'host'" in fields["respond[0].requires[0]"]


def test_item_outside_for_each(tmp_path: Path) -> None:
    text = GOOD.replace(
        'value: "${alert.hosts[0]}"}\n    execute_at', 'value: "${item}"}\n    execute_at'
    )
    err = _one(write(tmp_path, "item.yaml", text))
    assert err.field == "respond[0].target.value"
    assert "`item` is only defined inside a for_each" in str(err)


def test_all_errors_across_files_and_duplicate_names(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)  # same name
    write(tmp_path, "c.yaml", GOOD.replace("points: 60", "points: lots"))
    with pytest.raises(PlaybookValidationError) as info:
        load_playbooks(tmp_path)
    errors = info.value.errors
    assert [Path(e.file).name for e in errors] == ["b.yaml", "c.yaml"] or sorted(
        Path(e.file).name for e in errors
    ) == ["b.yaml", "c.yaml"]
    by_file = {Path(e.file).name: e for e in errors}
    assert "already used by" in str(by_file["b.yaml"])
    assert by_file["b.yaml"].line == 1
    assert by_file["c.yaml"].field == "score.rules[0].points"
    assert len(str(info.value).splitlines()) == 2


def test_duplicate_yaml_keys_are_rejected(tmp_path: Path) -> None:
    err = _one(
        write(tmp_path, "dup.yaml", GOOD.replace("priority: 100", "priority: 100\npriority: 5"))
    )
    assert "duplicate key 'priority'" in str(err)
    assert err.line == 5


CATALOG = {
    "asset_inventory": {"lookup_asset": CapabilitySpec("query")},
    "threat_intel": {"lookup": CapabilitySpec("query")},
    "containment": {
        "isolate_host": CapabilitySpec("action", "host"),
        "block_ip": {"kind": "action", "target": "ip"},
    },
}


def test_catalog_checks_connectors_capabilities_and_targets(tmp_path: Path) -> None:
    assert load_playbooks([write(tmp_path, "ok.yaml", GOOD)], catalog=CATALOG)
    text = (
        GOOD.replace("connector: threat_intel", "connector: threat_intl")
        .replace("capability: lookup_asset", "capability: isolate_host")
        .replace("connector: asset_inventory", "connector: containment")
        .replace(
            "action: isolate_host\n    target: {type: host",
            "action: block_ip\n    target: {type: host",
        )
    )
    errors = _errors(write(tmp_path, "bad.yaml", text), catalog=CATALOG)
    fields = {e.field: str(e) for e in errors}
    assert "is an action; investigation steps may only use queries" in fields["steps[0].capability"]
    assert "unknown connector 'threat_intl'" in fields["steps[1].connector"]
    assert "block_ip acts on ip, not host" in fields["respond[0].target.type"]
