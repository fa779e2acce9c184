"""The drop-file name grammar: `to-<recipient>[+<recipient>...]-from-<sender>[-<topic>].email`.

Names are matched against the known addresses, longest match first, so hyphenated addresses and a
topic suffix both work: `to-database-engineer-from-data-engineer-schema-review.email` is recipient
`database-engineer`, sender `data-engineer`, topic `schema-review`. Matching is case-insensitive
with spaces and `_` read as `-` (SPEC §3). The parser raises only `BadName`.
"""

from __future__ import annotations

import re
from collections import namedtuple

from agentops.errors import ValidationError

SUFFIX = ".email"
MAX_NAME_BYTES = 200  # longer names are dead-lettered (the file system allows 255)
_TOPIC_PUNCT = frozenset(" -_.,+()'&@#=")
_DASHES = re.compile(r"-{2,}")


class BadName(ValidationError):
    """A drop-file name that does not give a valid envelope.

    `cause` is the dead-letter cause (`bad_name`, `name_too_long`, `unknown_recipient`,
    `unknown_sender`); `sender` is the sender's address when the name still made it clear.
    """

    def __init__(self, message: str, *, cause: str = "bad_name", sender: str | None = None,
                 hint: str | None = None):
        super().__init__(message, hint=hint)
        self.cause = cause
        self.sender = sender


class Envelope(namedtuple("Envelope", "recipients sender topic", defaults=(None,))):
    """What a drop file's name says: `recipients` (a tuple of addresses), `sender`, `topic` (or None)."""

    __slots__ = ()


def _norm(text: str) -> str:
    """Lower case, spaces and `_` as `-`, one character for one (positions stay aligned)."""
    low = text.lower()
    if len(low) == len(text) and text.isascii():
        return low.replace(" ", "-").replace("_", "-").replace("\t", "-")
    out = []
    for ch in text:
        low = ch.lower()
        if ch in " _\t":
            low = "-"
        out.append(low if len(low) == 1 else ch)
    return "".join(out)


_SAFE_ASCII = re.compile(r"[A-Za-z0-9 \-_.,+()'&@#=]*")


def _check_chars(name: str) -> None:
    if name.isascii() and len(name) <= MAX_NAME_BYTES and ".." not in name and _SAFE_ASCII.fullmatch(name):
        return
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise BadName(f"file name is {len(name.encode('utf-8', 'surrogatepass'))} bytes long "
                      f"(at most {MAX_NAME_BYTES})", cause="name_too_long",
                      hint="use a shorter topic; put details in the Subject header")
    if ".." in name:
        raise BadName(f"file name {name!r} contains '..'", hint="use a plain topic")
    for ch in name:
        if ch.isalnum() or ch in _TOPIC_PUNCT:
            continue
        if "\udc80" <= ch <= "\udcff":  # a byte that is not UTF-8, as Python keeps it
            raise BadName(f"file name is not valid UTF-8 (byte 0x{ord(ch) - 0xdc00:02x})",
                          hint="name the file in UTF-8")
        raise BadName(f"file name {name!r} contains the character {ch!r} (U+{ord(ch):04X})",
                      hint="use letters, digits, '-', '_', '.', '+' and spaces only")


class Matcher:
    """Parses names against one set of known addresses (build it once per routing batch)."""

    def __init__(self, known):
        self.known = frozenset(known)
        self._by_len = sorted(self.known, key=lambda a: (-len(a), a))

    def _prefixes(self, text: str, pos: int):
        """Known addresses that `text[pos:]` starts with, longest first."""
        for addr in self._by_len:
            if text.startswith(addr, pos):
                yield addr

    def parse(self, name: str) -> Envelope:
        """Parse a drop-file name (with or without the `.email` suffix)."""
        if not isinstance(name, str) or not name:
            raise BadName("empty file name")
        _check_chars(name)
        stem = name[: -len(SUFFIX)] if name.lower().endswith(SUFFIX) else name
        norm = _norm(stem)
        if not norm.startswith("to-") or "-from-" not in norm:
            raise BadName(f"file name {name!r} does not read to-<recipient>-from-<sender>[-<topic>].email",
                          hint="e.g. to-database-engineer-from-data-engineer-schema-review.email")
        found = self._recipients(norm, 3, ())
        if found is not None:
            return found_env(found, stem)
        raise self._explain(name, norm)

    def _recipients(self, norm: str, pos: int, got: tuple[str, ...]):
        for addr in self._prefixes(norm, pos):
            end = pos + len(addr)
            if norm.startswith("+", end):
                found = self._recipients(norm, end + 1, got + (addr,))
                if found is not None:
                    return found
            if norm.startswith("-from-", end):
                found = self._sender(norm, end + 6, got + (addr,))
                if found is not None:
                    return found
        return None

    def _sender(self, norm: str, pos: int, recipients: tuple[str, ...]):
        for addr in self._prefixes(norm, pos):
            end = pos + len(addr)
            if end == len(norm):
                return recipients, addr, None
            if norm[end] == "-" and norm[end + 1 :].strip("-. +"):
                return recipients, addr, end + 1
        return None

    def _explain(self, name: str, norm: str) -> BadName:
        """Why a structurally plausible name did not match: name the unknown address."""
        head, _, tail = norm[3:].partition("-from-")
        for part in head.split("+"):
            if part not in self.known:
                sender = next(self._prefixes(tail, 0), None)
                return BadName(f"unknown recipient '{part}' in file name {name!r}", cause="unknown_recipient",
                               sender=sender if sender and sender != "all" else None,
                               hint="check the address, or add the agent to agentops.toml")
        return BadName(f"unknown sender in file name {name!r} (after 'from-': '{tail}')", cause="unknown_sender",
                       hint="use your own address after from-")


def found_env(found, stem: str) -> Envelope:
    recipients, sender, topic_at = found
    topic = None
    if topic_at is not None:
        topic = stem[topic_at:].strip(" -_.") or None
    unique = tuple(dict.fromkeys(recipients))
    if sender == "all":
        raise BadName("'all' cannot be a sender", cause="unknown_sender", hint="use your own address after from-")
    return Envelope(unique, sender, topic)


def topic_name(topic: str, limit: int = 60) -> str:
    """A topic usable in a file name: words of letters and digits joined by '-'."""
    words = re.findall(r"[^\W_]+", topic, flags=re.UNICODE)
    out = _DASHES.sub("-", "-".join(words)).strip("-")
    return out[:limit].strip("-")
