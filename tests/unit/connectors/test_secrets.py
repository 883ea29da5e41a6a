"""Credential references: env and file forms, rotation, and never showing the value."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from pydantic import BaseModel
from soc_agent_connectors import SecretRef, SecretUnavailableError


class Holder(BaseModel):
    credentials: SecretRef


def test_env_reference_reads_at_every_use(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = SecretRef("env:OKTA_API_TOKEN")
    monkeypatch.setenv("OKTA_API_TOKEN", "00aaaaaaaaaaaaaaaaaaaa")
    assert ref.get() == "00aaaaaaaaaaaaaaaaaaaa"
    monkeypatch.setenv("OKTA_API_TOKEN", "00bbbbbbbbbbbbbbbbbbbb")
    assert ref.get() == "00bbbbbbbbbbbbbbbbbbbb"
    monkeypatch.delenv("OKTA_API_TOKEN")
    with pytest.raises(SecretUnavailableError, match="OKTA_API_TOKEN is not set"):
        ref.get()


def test_file_reference_rereads_only_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token-value\n")
    ref = SecretRef(f"file:{path}")
    assert ref.get() == "first-token-value"
    st = os.stat(path)
    path.write_text("other-token-value\n")  # same size; mtime pinned: looks unchanged
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ref.get() == "first-token-value"
    assert ref.refresh() == ("other-token-value", True)
    assert ref.refresh() == ("other-token-value", False)
    path.write_text("third-token-value-longer\n")
    assert ref.get() == "third-token-value-longer"


def test_missing_or_empty_file_names_the_reference(tmp_path: Path) -> None:
    with pytest.raises(SecretUnavailableError, match=r"file:.*nope: cannot read the file"):
        SecretRef(f"file:{tmp_path / 'nope'}").get()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretUnavailableError, match="the file is empty"):
        SecretRef(f"file:{tmp_path / 'empty'}").get()


def test_the_value_is_never_shown() -> None:
    ref = SecretRef("hunter2-literal-secret")
    assert ref.kind == "literal" and ref.get() == "hunter2-literal-secret"
    holder = Holder(credentials=ref)
    for shown in (repr(ref), str(ref), repr(holder), holder.model_dump_json()):
        assert "hunter2" not in shown
    assert Holder(credentials="env:VT_API_KEY").model_dump() == {"credentials": "env:VT_API_KEY"}
    with pytest.raises(TypeError):
        pickle.dumps(ref)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "must not be empty"),
        ("env:", "needs an environment variable name"),
        ("env:NOT A NAME", "needs an environment variable name"),
        ("file:", "needs a path"),
    ],
)
def test_malformed_references_are_refused(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        SecretRef(spec)


@pytest.mark.parametrize("padding", ["\n", "\r\n", "  \t", "\n\n"])
def test_surrounding_whitespace_is_stripped_from_every_source(
    padding: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Kubernetes secret made from a file and passed as an env var ends with a newline."""
    value = "9d1e5a7c3b2f4e6a8c0d1e2f3a4b5c6d"
    monkeypatch.setenv("PADDED_KEY", value + padding)
    (tmp_path / "key").write_text(padding + value + padding)
    assert SecretRef("env:PADDED_KEY").get() == value
    assert SecretRef(f"file:{tmp_path / 'key'}").get() == value


@pytest.mark.parametrize("inner", ["\n", "\r", "\x1b[0m", "\x07", "\u202e", "\u200b"])
def test_control_characters_inside_a_secret_are_refused(
    inner: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = f"9d1e5a7c{inner}3b2f4e6a"
    monkeypatch.setenv("BAD_KEY", bad)
    (tmp_path / "key").write_text(bad)
    for ref in (SecretRef("env:BAD_KEY"), SecretRef(f"file:{tmp_path / 'key'}")):
        with pytest.raises(SecretUnavailableError, match="control characters") as caught:
            ref.get()
        assert "9d1e5a7c" not in str(caught.value)
