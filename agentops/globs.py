"""Path globs as automata: does a glob match a path, and can two globs match a common path?

The syntax is the usual one for workspace paths (relative, `/`-separated):
  `?` one character other than `/`; `*` any run of characters other than `/`;
  `[abc]`, `[a-z]`, `[!abc]` one character of (or not of) a set, never `/`;
  `**` as a whole segment: zero or more segments (`sql/**/x.sql` matches `sql/x.sql` and
  `sql/a/b/x.sql`); as the last segment, everything below (`sql/orders/**`); elsewhere it is `*`.
A glob with none of these is a plain path. Paths are normalized: no leading or trailing `/`, no
empty, `.` or `..` segments.

`overlap(a, b)` answers exactly whether some normalized path matches both: it walks the product of
the two globs' automata (and a third that accepts only normalized paths) breadth first, over an
alphabet of every character either glob names plus one it names nowhere, which stands for all the
others. It returns the shortest common path (a witness) or None.
"""

from __future__ import annotations

from collections import deque

from agentops.errors import ValidationError

MAX_CLASS = 512  # characters a [...] set may name (ranges included)
_SPECIAL = set("*?[")

# a transition label: (negated, frozenset of chars); matches c when (c in chars) != negated
_ANY_BUT_SLASH = (True, frozenset("/"))
_ANY = (True, frozenset())


def is_glob(text: str) -> bool:
    return any(c in _SPECIAL for c in text)


def normalize(path: str, what: str = "path") -> str:
    """`./a//b/` -> `a/b`. Refuses absolute paths, `..` and empty paths (ValidationError)."""
    p = path.replace("\\", "/") if "\\" in path and "/" not in path else path
    if p.startswith("/"):
        raise ValidationError(f"{what} {path!r} is absolute", hint="give a path relative to the workspace")
    parts = [s for s in p.split("/") if s not in ("", ".")]
    if ".." in parts:
        raise ValidationError(f"{what} {path!r} leaves the workspace ('..')", hint="give a path inside the workspace")
    if not parts:
        raise ValidationError(f"{what} {path!r} is empty")
    return "/".join(parts)


class Glob:
    """A compiled glob: an NFA with `edges[state] = [(label, next)]`, `eps[state] = [next]` and one
    accepting state (`accept`). Build with `Glob(pattern)`."""

    __slots__ = ("pattern", "edges", "eps", "accept", "_closure")

    def __init__(self, pattern: str):
        self.pattern = pattern
        self.edges: list[list[tuple[tuple[bool, frozenset], int]]] = []
        self.eps: list[list[int]] = []
        self._compile(pattern)
        self._closure: dict[int, frozenset[int]] = {}

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"

    # building ---------------------------------------------------------------------------------
    def _new(self) -> int:
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    def _compile(self, pattern: str) -> None:
        segments = pattern.split("/")
        cur = self._new()
        for n, seg in enumerate(segments):
            last = n == len(segments) - 1
            if seg == "**" and not last:
                # zero or more whole segments, each one or more non-slash characters then `/`
                inner = self._new()
                self.edges[cur].append((_ANY_BUT_SLASH, inner))
                self.edges[inner].append((_ANY_BUT_SLASH, inner))
                self.edges[inner].append(((False, frozenset("/")), cur))
                continue  # the next segment starts at `cur` (no `/` of its own: it was consumed)
            if seg == "**":
                # everything below: one or more characters of any kind
                end = self._new()
                self.edges[cur].append((_ANY, end))
                self.edges[end].append((_ANY, end))
                cur = end
                break
            cur = self._segment(seg, cur)
            if not last:
                nxt = self._new()
                self.edges[cur].append(((False, frozenset("/")), nxt))
                cur = nxt
        self.accept = cur

    def _segment(self, seg: str, cur: int) -> int:
        i = 0
        while i < len(seg):
            c = seg[i]
            if c == "*":
                while i + 1 < len(seg) and seg[i + 1] == "*":
                    i += 1
                self.edges[cur].append((_ANY_BUT_SLASH, cur))
                nxt = self._new()
                self.eps[cur].append(nxt)
                cur = nxt
            elif c == "?":
                nxt = self._new()
                self.edges[cur].append((_ANY_BUT_SLASH, nxt))
                cur = nxt
            elif c == "[" and (end := _class_end(seg, i)) is not None:
                label = _class(seg[i + 1:end], self.pattern)
                nxt = self._new()
                self.edges[cur].append((label, nxt))
                cur = nxt
                i = end
            else:
                nxt = self._new()
                self.edges[cur].append(((False, frozenset(c)), nxt))
                cur = nxt
            i += 1
        return cur

    # reading ----------------------------------------------------------------------------------
    def closure(self, state: int) -> frozenset[int]:
        got = self._closure.get(state)
        if got is None:
            seen, todo = {state}, [state]
            while todo:
                for nxt in self.eps[todo.pop()]:
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            got = self._closure[state] = frozenset(seen)
        return got

    def start(self) -> frozenset[int]:
        return self.closure(0)

    def step(self, states: frozenset[int], ch: str) -> frozenset[int]:
        out: set[int] = set()
        for s in states:
            for (neg, chars), nxt in self.edges[s]:
                if (ch in chars) != neg:
                    out |= self.closure(nxt)
        return frozenset(out)

    def named_chars(self) -> set[str]:
        return {c for row in self.edges for (_, chars), _ in row for c in chars}

    def matches(self, path: str) -> bool:
        states = self.start()
        for ch in path:
            states = self.step(states, ch)
            if not states:
                return False
        return self.accept in states


def _class_end(seg: str, i: int) -> int | None:
    """Index of the `]` closing the set opened at seg[i], or None when it is not a set."""
    j = i + 1
    if j < len(seg) and seg[j] == "!":
        j += 1
    if j < len(seg) and seg[j] == "]":
        j += 1  # a leading `]` is a member
    end = seg.find("]", j)
    return end if end != -1 else None


def _class(body: str, pattern: str) -> tuple[bool, frozenset]:
    neg = body.startswith("!")
    if neg:
        body = body[1:]
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = ord(body[i]), ord(body[i + 2])
            if hi - lo + 1 > MAX_CLASS:
                raise ValidationError(f"glob {pattern!r}: the range {body[i:i + 3]!r} names more than "
                                      f"{MAX_CLASS} characters", hint="use a smaller range or `?`")
            chars.update(chr(c) for c in range(lo, hi + 1))
            i += 3
        else:
            chars.add(body[i])
            i += 1
    if neg:
        return (True, frozenset(chars | {"/"}))
    return (False, frozenset(chars - {"/"}))


def compile_glob(pattern: str) -> Glob:
    return _cache.get(pattern) or _cache.setdefault(pattern, Glob(pattern))


_cache: dict[str, Glob] = {}


def matches(pattern: str, path: str) -> bool:
    return compile_glob(pattern).matches(path)


def overlap(a: str, b: str) -> str | None:
    """The shortest normalized path both globs match, or None when there is none."""
    if not is_glob(a) and not is_glob(b):
        return a if a == b else None
    if not is_glob(a) or not is_glob(b):
        plain, pattern = (a, b) if not is_glob(a) else (b, a)
        return plain if compile_glob(pattern).matches(plain) else None
    ga, gb = compile_glob(a), compile_glob(b)
    named = ga.named_chars() | gb.named_chars() | {"/"}
    other = next(c for c in _spare_chars() if c not in named)
    alphabet = sorted(named) + [other]
    # path-shape states: 0 start, 1 after `/`, 2 after another character (the only accepting one)
    start = (ga.start(), gb.start(), 0)
    parent: dict[tuple, tuple | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        sa, sb, shape = node
        if shape == 2 and ga.accept in sa and gb.accept in sb:
            return _walk_back(parent, node)
        for ch in alphabet:
            if ch == "/":
                if shape != 2:
                    continue
                nshape = 1
            else:
                nshape = 2
            na = ga.step(sa, ch)
            if not na:
                continue
            nb = gb.step(sb, ch)
            if not nb:
                continue
            nxt = (na, nb, nshape)
            if nxt not in parent:
                parent[nxt] = (node, ch)  # type: ignore[assignment]
                queue.append(nxt)
    return None


def _spare_chars():
    """Candidates for the one character standing for every character neither glob names."""
    yield from "xyzXYZ0123456789_"
    for code in range(0x100, 0x110000):
        yield chr(code)


def _walk_back(parent: dict, node) -> str:
    out = []
    while parent[node] is not None:
        node, ch = parent[node]
        out.append(ch)
    return "".join(reversed(out))
