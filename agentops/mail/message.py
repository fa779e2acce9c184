"""The message model: an RFC 5322 message (UTF-8) read and written with Python's `email` package.

Headers are optional: a file whose first lines are not a header block is all body, and a file that
starts with an empty line has no headers. Bodies are kept exactly as written (no MIME decoding);
header values are kept as written too (unfolded), so what the library writes parses back the same.
A CR or LF inside a header value is header injection and is refused.
"""

from __future__ import annotations

import functools
import re

from agentops.errors import ValidationError
from agentops.text import one_line

# The email package is imported where a message is parsed, not where one is written: with a daemon
# running, `agentops mail send` only writes a file, and importing `email.parser` and `email.utils` would
# add about 20 ms to its ~35 ms (measured on the 2-core benchmark machine).

KNOWN_HEADERS = ("From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Priority")
PRIORITIES = ("low", "normal", "high", "urgent")
_CANON = {h.lower(): h for h in KNOWN_HEADERS}
_FIELD = re.compile(r"[!-9;-~]+:")  # RFC 5322 field name: printable ASCII except ':'
_FOLD = re.compile(r"\r?\n(?=[ \t])")


@functools.cache
def _parser():
    from email import policy
    from email.parser import HeaderParser

    return HeaderParser(policy=policy.compat32)


class MessageError(ValidationError):
    """A message that cannot be accepted. `cause` is the dead-letter cause."""

    def __init__(self, message: str, *, cause: str = "bad_header", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.cause = cause


def canonical(name: str) -> str:
    """`message-id` -> `Message-ID`; unknown names keep their spelling."""
    return _CANON.get(name.lower(), name)


class Message:
    """Headers (ordered `(name, value)` pairs, names canonical for the known ones) and a body.
    (A plain class, not a dataclass: see `agentops.workspace`.)"""

    def __init__(self, headers: list[tuple[str, str]] | None = None, body: str = ""):
        self.headers = [] if headers is None else headers
        self.body = body

    def __repr__(self) -> str:
        return f"Message(headers={self.headers!r}, body={self.body!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Message) and (other.headers, other.body) == (self.headers, self.body)

    # access ---------------------------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self.headers if k.lower() == low]

    def set(self, name: str, value: str) -> None:
        """Replace every `name` header with one (kept at the first one's place, else appended)."""
        check_value(name, value)
        low, name = name.lower(), canonical(name)
        out, placed = [], False
        for k, v in self.headers:
            if k.lower() == low:
                if not placed:
                    out.append((name, value))
                    placed = True
            else:
                out.append((k, v))
        if not placed:
            out.append((name, value))
        self.headers = out

    def remove(self, name: str) -> None:
        low = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != low]

    # files ----------------------------------------------------------------------------------
    def to_text(self) -> str:
        lines = []
        for name, value in self.headers:
            check_name(name)
            check_value(name, value)
            lines.append(f"{name}: {value}\n" if value else f"{name}:\n")
        return "".join(lines) + "\n" + self.body

    def to_bytes(self) -> bytes:
        text = self.to_text()
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise MessageError(f"the body is not valid UTF-8 text ({_bad_utf8(self.body)})", cause="invalid_utf8",
                               hint="send UTF-8 text") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> "Message":
        """Parse a file's bytes (strict UTF-8, no NUL). Raises MessageError with a cause."""
        if not data:
            raise MessageError("the file is empty", cause="empty", hint="write a message body")
        if b"\x00" in data:
            raise MessageError("the file contains NUL bytes (binary, not a text message)", cause="binary")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"not valid UTF-8 at byte {exc.start}", cause="invalid_utf8",
                               hint="save the file as UTF-8") from None
        return cls.from_text(text)

    @classmethod
    def from_text(cls, text: str) -> "Message":
        if text.startswith("\ufeff"):
            text = text[1:]
        split = _header_block(text)
        if split is None:
            return cls([], text)
        head, body = split
        if "\r" in head.replace("\r\n", ""):
            raise MessageError("a header contains a bare carriage return (header injection)",
                               cause="header_injection", hint="one header per line, no CR inside a value")
        headers = []
        for name, value in _raw_headers(head):
            check_name(name)
            value = _FOLD.sub("", value).strip(" \t")
            if "\r" in value or "\n" in value:
                raise MessageError(f"header {name} contains a line break (header injection)",
                                   cause="header_injection")
            headers.append((canonical(name), value))
        return cls(headers, body)

    def validate(self) -> None:
        """Check the known headers' values (Priority, Date, single-valued fields)."""
        for name in ("Subject", "Date", "Message-ID", "In-Reply-To", "Priority"):
            if len(self.get_all(name)) > 1:
                raise MessageError(f"header {name} appears {len(self.get_all(name))} times (at most once)")
        pr = self.get("Priority")
        if pr is not None and pr.strip().lower() not in PRIORITIES:
            raise MessageError(f"Priority: {pr!r} is not one of {', '.join(PRIORITIES)}",
                               hint="use low, normal, high or urgent")
        date = self.get("Date")
        if date is not None:
            import email.utils

            try:
                email.utils.parsedate_to_datetime(date)
            except (TypeError, ValueError, IndexError):
                raise MessageError(f"Date: {date!r} is not an RFC 5322 date",
                                   hint="leave Date out; it is added on delivery") from None


def _raw_headers(head: str):
    """(name, raw value) pairs of a header block, as `email`'s parser gives them. A block with no
    folded line (the common case) is split here: the same result, without the parser's cost."""
    if "\n " in head or "\n\t" in head:
        return _parser().parsestr(head + "\n", headersonly=True).raw_items()
    out = []
    for line in head.split("\n"):
        if line:
            name, _, value = line.partition(":")
            out.append((name, value.lstrip(" \t").removesuffix("\r")))
    return out


def check_name(name: str) -> None:
    if not name or not _FIELD.fullmatch(name + ":"):
        raise MessageError(f"header name {name!r} is not valid (printable ASCII, no ':' or spaces)")


def check_value(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise MessageError(f"header {name} contains a line break (header injection)", cause="header_injection",
                           hint="header values are one line")
    if "\x00" in value:
        raise MessageError(f"header {name} contains a NUL character", cause="binary")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MessageError(f"header {name} is not valid UTF-8 text ({_bad_utf8(value)})", cause="invalid_utf8",
                               hint="send UTF-8 text") from None


def _bad_utf8(text: str) -> str:
    """Where `text` stops being UTF-8: undecodable input bytes arrive as lone surrogates."""
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            code = ord(ch)
            byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
            return f"{byte} at character {i}"
    return "unknown position"


def _header_block(text: str) -> tuple[str, str] | None:
    """Split `text` into (header block, body), or None when it has no header block.

    A header block is a run of `Name: value` lines (with folded continuation lines), at least one
    of them a known header or an `X-` header, ended by an empty line or the end of the file.
    A leading empty line means "no headers"; the rest is the body.
    """
    if text.startswith("\n"):
        return "", text[1:]
    if text.startswith("\r\n"):
        return "", text[2:]
    pos, known, n = 0, False, len(text)
    while pos < n:
        end = text.find("\n", pos)
        line_end = n if end < 0 else end
        line = text[pos:line_end]
        if line.endswith("\r"):
            line = line[:-1]
        nxt = n if end < 0 else end + 1
        if line == "":
            return (text[:pos], text[nxt:]) if known else None
        if line[0] in " \t":
            if pos == 0:
                return None
        else:
            colon = line.find(":")
            if colon <= 0:
                return None
            fname = line[:colon]
            if not _FIELD.fullmatch(fname + ":"):
                return None
            low = fname.lower()
            if low in _CANON or low.startswith("x-"):
                known = True
        pos = nxt
    return (text, "") if known else None


def addresses(value: str | None) -> list[str]:
    """The addresses in a To/Cc header value, as written before slugging:
    `Database Engineer, Dev Ops <devops>, user@agentops` -> [Database Engineer, devops, user]."""
    if not value:
        return []
    parts, buf, quoted = [], [], False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    out = []
    for part in parts:
        angle = re.search(r"<([^<>]*)>", part)
        addr = (angle.group(1) if angle else part).strip().strip('"').strip()
        if "@" in addr:
            addr = addr.split("@", 1)[0]
        if addr:
            out.append(addr)
    return out


def decoded(value: str) -> str:
    """A header value as text to show or index: RFC 2047 encoded words (`=?utf-8?q?caf=C3=A9?=`)
    decoded, and any control character they decoded to shown as a space. Undecodable: as written."""
    if "=?" not in value:
        return value
    import email.errors
    import email.header

    try:
        text = str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return value
    return one_line(text)


def message_ids(value: str | None) -> list[str]:
    """The `<id>` tokens in a References / In-Reply-To value (bare ids are accepted too)."""
    if not value:
        return []
    found = re.findall(r"<[^<>\s]+>", value)
    if found:
        return found
    return [f"<{v.strip('<>')}>" for v in value.split() if v.strip("<>")]
