"""Text that agents wrote, made safe to show on one line of a terminal or in a mail header."""

from __future__ import annotations

# Every character that could drive a terminal, break a header or make a line read other than it is
# stored, as a space: C0 controls (tab and newline too: the text goes on one line), DEL, the C1
# controls (0x9b is a one-byte CSI to many terminals), the Unicode line and paragraph separators,
# and the bidirectional formatting characters (U+202E shows what follows it right to left, so a run
# id could be made to read as another).
BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
CONTROL = str.maketrans({c: " " for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *BIDI)})


def one_line(text: str) -> str:
    """`text` with every control character (CONTROL) shown as a space."""
    return text.translate(CONTROL)


def width(text: str) -> int:
    """Columns `text` takes on a terminal: two for a wide or full-width character (CJK, most emoji),
    none for a combining mark or a format character, one for the rest."""
    if text.isascii():
        return len(text)
    from unicodedata import category, east_asian_width

    return sum(0 if category(c) in ("Mn", "Me", "Cf") else 2 if east_asian_width(c) in ("W", "F") else 1
               for c in text)
