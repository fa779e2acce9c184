"""`agentops.text.one_line`: agent text shown on one terminal line or in one mail header."""

from __future__ import annotations

import re

from agentops.cli.common import table_lines
from agentops.text import one_line, width


def test_controls_separators_and_bidi_formatting_become_spaces():
    hostile = "r1\x1b[2J\x9b\t\n\u2028\u2029\u202eevil\u2066\u2069\u200f\u061c"
    assert one_line(hostile) == "r1 [2J" + " " * 6 + "evil" + " " * 4
    assert one_line("Zürich 東京 ok") == "Zürich 東京 ok"  # letters of any script are kept


def test_a_table_cell_cannot_reverse_the_rest_of_its_line():
    lines = table_lines([[("r1\u202edeliaf", None), ("succeeded", None)]], ["run", "state"])
    assert "\u202e" not in "".join(lines) and "r1 deliaf" in lines[1]


def test_wide_characters_take_two_columns_and_marks_none():
    assert width("abc") == 3 and width("東京") == 4 and width("e\u0301") == 1 and width("🚀") == 2


def test_a_table_with_wide_characters_keeps_its_columns_aligned():
    rows = [[("東京", None), ("ok", None)], [("Zürich", None), ("failed", "red")], [("e\u0301clair", None), ("ok", None)]]
    for colour in (False, True):
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in table_lines(rows, ["city", "state"], colour=colour)]
        # the STATE column starts at the same terminal column on every line
        assert {width(line[:line.rindex(state)]) for line, state in zip(lines, ["STATE", "ok", "failed", "ok"])} == {8}
