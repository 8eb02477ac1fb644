"""The one-time set-up token (issue 19 item 7)."""

from __future__ import annotations

import pytest

from services.access.setup import banner, forget_setup_token, issue_setup_token, setup_token_valid


def test_only_the_issued_token_is_valid_and_a_new_one_replaces_it():
    token = issue_setup_token(root="/w1")
    assert len(token) >= 24 and setup_token_valid(root="/w1", token=token)
    assert not setup_token_valid(root="/w1", token=token + "x") and not setup_token_valid(root="/w1", token="")
    assert not setup_token_valid(root="/w2", token=token)  # another workspace
    again = issue_setup_token(root="/w1")
    assert again != token and not setup_token_valid(root="/w1", token=token)
    forget_setup_token(root="/w1")
    assert not setup_token_valid(root="/w1", token=again)


def test_an_operator_chosen_token_must_be_long_enough():
    assert issue_setup_token(root="/w3", token="chosen-by-the-operator") == "chosen-by-the-operator"
    assert setup_token_valid(root="/w3", token="chosen-by-the-operator")
    with pytest.raises(ValueError):
        issue_setup_token(root="/w3", token="short")


def test_the_banner_shows_the_token_and_the_link():
    text = banner(token="abc123abc123abc123")
    assert "abc123abc123abc123" in text and "?setup_token=abc123abc123abc123" in text
