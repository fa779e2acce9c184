"""Text that agents wrote, made safe to show on one line of a terminal or in a mail header."""

from __future__ import annotations

# Every character that could drive a terminal or break a header, as a space: C0 controls (tab and
# newline too: the text goes on one line), DEL and the C1 controls (0x9b is a one-byte CSI to many
# terminals).
CONTROL = str.maketrans({c: " " for c in (*range(0x20), *range(0x7F, 0xA0))})


def one_line(text: str) -> str:
    """`text` with every control character (CONTROL) shown as a space."""
    return text.translate(CONTROL)
