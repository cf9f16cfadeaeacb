"""Which tickers a list names: names, shell patterns, @FILE; bad names and empty patterns refused."""

from __future__ import annotations

import re

import pytest

from pairscan.errors import PairscanError
from pairscan.universe import match, parse_list, select

TICKERS = ["aapl", "abc", "BRK/B", "ibm", "msft", "spy", "qqq"]


def test_a_list_is_names_and_patterns_separated_by_commas():
    assert parse_list("aapl, ms*,aapl,") == ("aapl", "ms*")
    assert parse_list(["ibm", " spy "]) == ("ibm", "spy")
    assert parse_list(None) is None


def test_a_list_file_has_one_per_line_and_comments(tmp_path):
    listed = tmp_path / "sector.txt"
    listed.write_text("# banks\naapl  # first\n\nq*\n")
    assert parse_list(f"@{listed}") == ("aapl", "q*")
    assert select(TICKERS, f"@{listed}") == ["aapl", "qqq"]


def test_patterns_match_in_the_store_order_and_exclusions_apply_last():
    assert select(TICKERS, "a*,ibm", "abc") == ["aapl", "ibm"]
    assert select(TICKERS, None, "[sq]*") == ["aapl", "abc", "BRK/B", "ibm", "msft"]
    assert match(["BRK/B"], TICKERS) == ["BRK/B"]


@pytest.mark.parametrize("include, exclude, message", [
    ("aapx", None, "no ticker 'aapx' in the store; did you mean 'aapl'?"),
    ("AAPL", None, "did you mean 'aapl'?"),
    ("z*", None, "the pattern 'z*' matches no ticker"),
    (None, "nope", "exclude: no ticker 'nope'"),
    (",", None, "tickers names no ticker"),
    ("@/nonexistent/list.txt", None, "cannot read the list"),
])
def test_what_names_nothing_is_bad_input(include, exclude, message):
    with pytest.raises(PairscanError, match=re.escape(message)):
        select(TICKERS, include, exclude)


def test_messages_use_the_callers_spelling():
    with pytest.raises(PairscanError, match="^--tickers: "):
        select(TICKERS, "nope", options=("--tickers", "--exclude"))
