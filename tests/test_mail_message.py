"""The message model: what the library writes parses back the same; headers are optional."""

from __future__ import annotations

import email

import pytest
from hypothesis import given, settings, strategies as st

from agentops.mail.message import KNOWN_HEADERS, Message, MessageError


def test_no_header_block_is_all_body():
    m = Message.from_bytes(b"Note: the load failed\nat 3am, please look\n")
    assert m.headers == [] and m.body.startswith("Note: the load failed")


def test_headers_and_body():
    m = Message.from_bytes("Subject: Schéma\nPriority: HIGH\nX-Custom: 1\n\nbody ünïcode\n".encode())
    assert m.get("subject") == "Schéma" and m.get("X-Custom") == "1"
    assert m.body == "body ünïcode\n"
    m.validate()  # Priority is case-insensitive

def test_priority_values():
    Message.from_text("Priority: urgent\n\nx").validate()
    with pytest.raises(MessageError, match="Priority"):
        Message.from_text("Priority: whenever\n\nx").validate()


def test_folded_header_is_unfolded():
    m = Message.from_text("Subject: a long\n subject line\nTo: devops\n\nbody")
    assert m.get("Subject") == "a long subject line"


def test_leading_empty_line_means_no_headers():
    m = Message.from_text("\nSubject: not a header\n\nbody")
    assert m.headers == [] and m.body == "Subject: not a header\n\nbody"


@pytest.mark.parametrize("data, cause", [
    (b"", "empty"),
    (b"hello\x00world", "binary"),
    (b"caf\xe9\n", "invalid_utf8"),
    (b"Subject: hi\rBcc: evil\n\nbody", "header_injection"),
])
def test_rejects(data, cause):
    with pytest.raises(MessageError) as err:
        Message.from_bytes(data)
    assert err.value.cause == cause


def test_setting_a_value_with_a_newline_is_injection():
    m = Message()
    with pytest.raises(MessageError) as err:
        m.set("Subject", "hi\nBcc: evil")
    assert err.value.cause == "header_injection"


def test_crlf_files_parse():
    m = Message.from_bytes(b"Subject: hi\r\nTo: devops\r\n\r\nline1\r\nline2\r\n")
    assert m.get("Subject") == "hi" and m.get("To") == "devops" and m.body == "line1\r\nline2\r\n"


def test_written_file_is_read_by_the_email_package():
    m = Message([("From", "devops"), ("To", "developer"), ("Subject", "Überweisung")], "hello\n")
    parsed = email.message_from_bytes(m.to_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Überweisung" and parsed.get_content() == "hello\n"


_name = st.one_of(st.sampled_from(KNOWN_HEADERS), st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True))
_value = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"),
                 max_size=80).map(str.strip)
_body = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=500)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_name, _value), max_size=8), _body)
def test_round_trip(headers, body):
    m = Message(list(headers), body)
    back = Message.from_bytes(m.to_bytes())
    assert back.headers == m.headers
    assert back.body == m.body


_pad = st.sampled_from(["", " ", "\t", " \t "])
_raw_value = st.tuples(_pad, st.text(st.one_of(st.sampled_from("\x0b\x0c\x1c\x85\u2028 :é"), st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\r\n\x00")), max_size=30), _pad).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_name, _raw_value, st.sampled_from(["\n", "\r\n"]),
                          st.sampled_from(["", "\n ", "\r\n\t"])), min_size=1, max_size=6))
def test_header_split_is_the_email_packages(lines):
    """The header block split without the email package (no folded line) gives what it gives."""
    from agentops.mail.message import _parser, _raw_headers

    head = "".join(f"{name}:{value}{fold}{end}" for name, value, end, fold in lines)
    expected = list(_parser().parsestr(head + "\n", headersonly=True).raw_items())
    assert list(_raw_headers(head)) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parser_never_raises_anything_else(data):
    try:
        Message.from_bytes(data).validate()
    except MessageError:
        pass


def test_addresses_in_to_and_cc_headers():
    from agentops.mail.message import addresses

    assert addresses('Database Engineer, Dev Ops <devops>, user@agentops, "Eng, Data" <data-engineer>') == \
        ["Database Engineer", "devops", "user", "data-engineer"]
    assert addresses("") == [] and addresses(None) == []
