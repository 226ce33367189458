"""A missing ../shared fails loudly unless SPNAS_ALLOW_NO_SHARED=1 (then it skips)."""

import pytest

from tests.helpers import SHARED, require_shared


def test_missing_shared_fails_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.delenv("SPNAS_ALLOW_NO_SHARED", raising=False)
    with pytest.raises(pytest.fail.Exception, match="SPNAS_ALLOW_NO_SHARED=1"):
        require_shared(tmp_path / "no_shared_here")


def test_missing_shared_skips_with_the_opt_out(tmp_path, monkeypatch):
    monkeypatch.setenv("SPNAS_ALLOW_NO_SHARED", "1")
    with pytest.raises(pytest.skip.Exception, match="is missing"):
        require_shared(tmp_path / "no_shared_here")


def test_present_shared_is_returned():
    assert require_shared(SHARED) == SHARED
