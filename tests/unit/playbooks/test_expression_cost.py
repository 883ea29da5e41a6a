"""What one CEL expression may cost: refused at load time, or not run on data that is too big."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc_agent.errors import ExpressionError, PlaybookError
from soc_agent.playbooks import compile_expression, evaluate, load_playbook_file
from soc_agent.playbooks.expressions import EvaluationError

# The review's expression, in spirit: three nested comprehensions over the alert.
THREE_DEEP = (
    "alert.entities.exists(a, alert.entities.exists(b, "
    "alert.entities.exists(c, a.value + b.value + c.value == 'x')))"
)
TWO_DEEP = "alert.entities.exists(a, alert.entities.exists(b, a.value + b.value == 'x'))"

PLAYBOOK = """\
name: costly
match: "{match}"
steps: []
score:
  base: 10
respond: []
"""


def _write(tmp_path: Path, match: str) -> Path:
    path = tmp_path / "costly.yaml"
    path.write_text(PLAYBOOK.format(match=match))
    return path


def test_deep_nesting_fails_validation_naming_file_line_and_field(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError) as err:
        load_playbook_file(_write(tmp_path, THREE_DEEP))
    assert err.value.field == "match" and err.value.line == 2
    assert "costly.yaml" in str(err.value) and "nest 3 deep" in str(err.value)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("lists.range(100000000).size() > 0", "lists.range"),
        ("lists.range(size(alert.entities)).size() > 0", "lists.range"),
        ("alert.title == '" + "a" * 2100 + "'", "too long"),
        (
            " || ".join(f"alert.entities.exists(e{i}, e{i}.value == 'x')" for i in range(9)),
            "9 comprehensions",
        ),
    ],
)
def test_other_unbounded_shapes_are_refused(expression: str, problem: str) -> None:
    with pytest.raises(ExpressionError, match=problem):
        compile_expression(expression)


def test_strings_that_look_like_macros_do_not_count() -> None:
    compile_expression("alert.title == '.exists(a, .exists(b, .exists(c, x)))'")
    compile_expression(TWO_DEEP)
    compile_expression("lists.range(10).size() == 10")


def _alert(entities: int) -> dict[str, object]:
    return {
        "entities": [{"type": "ip", "value": f"10.0.{i // 256}.{i % 256}"} for i in range(entities)]
    }


def test_nested_comprehensions_run_on_small_data() -> None:
    assert evaluate(TWO_DEEP, {"alert": _alert(50)}) is False


def test_nested_comprehensions_over_large_data_are_not_run() -> None:
    with pytest.raises(EvaluationError) as err:
        evaluate(TWO_DEEP, {"alert": _alert(5000)})
    assert not err.value.missing_data  # an expression error, not missing evidence
    assert "not evaluated" in str(err.value) and "5000 items" in str(err.value)


def test_the_bound_counts_the_lists_the_expression_can_read() -> None:
    steps = {"siem": {"result": list(range(3000))}}
    # a big step result the expression does not read costs it nothing ...
    assert evaluate(TWO_DEEP, {"alert": _alert(3), "steps": steps}) is False
    # ... one it nests over does
    pairs = "steps.siem.result.exists(a, steps.siem.result.exists(b, a == b + 5000))"
    with pytest.raises(EvaluationError, match="3000 items"):
        evaluate(pairs, {"alert": _alert(3), "steps": steps})


def test_a_huge_original_is_never_read_and_only_refused_to_those_who_ask() -> None:
    original = {"evidence": [{"ip": f"10.0.{i // 256}.{i % 256}"} for i in range(30_000)]}
    alert = {"severity": "high", "entities": [], "original": original}
    # most expressions never touch the source document: they run as if it were small
    assert evaluate("alert.severity == 'high'", {"alert": alert}) is True
    assert evaluate("alert.severity + '${x}'", {"alert": alert, "item": 1}) == "high${x}"
    # one that reads it is refused, by name, rather than converting 60,000 values
    with pytest.raises(EvaluationError, match=r"alert\.original holds more than 50,000 values"):
        evaluate("size(alert.original.evidence) > 0", {"alert": alert})
