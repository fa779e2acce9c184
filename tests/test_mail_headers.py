"""Headers written by agents, through real drop files and the real `agentops` command: Bcc is
honoured and never shown to anyone, RFC 2047 encoded subjects are shown and searched as text."""

from __future__ import annotations

import json
import mailbox

from agentops.mail.route import route_pending
from conftest import run_agentops


def drop(ws, name: str, text: str):
    path = ws.email_dir / name
    path.write_text(text, encoding="utf-8")
    return path


def delivered_copies(ws, agent: str) -> list:
    return list(mailbox.Maildir(ws.inbox(agent), create=False))


def test_bcc_recipients_get_the_message_and_nobody_sees_the_bcc_header(ws):
    path = drop(ws, "to-devops-from-data-engineer-plan.email",
                "Cc: developer\nBcc: database-engineer, user\nSubject: plan\n\nthe plan\n")
    report = route_pending(ws, [path])
    assert report.delivered == 1 and report.dead == 0
    assert report.inboxes == {"devops", "developer", "database-engineer", "user"}
    for agent in ("devops", "developer", "database-engineer", "user"):
        [copy] = delivered_copies(ws, agent)
        assert copy["Bcc"] is None and "database-engineer" not in copy["To"] + copy["Cc"]
        assert b"Bcc" not in (ws.inbox(agent) / "new").iterdir().__next__().read_bytes()
    r = run_agentops("mail", "read", report.message_ids[0], "--as", "devops", "--json", cwd=ws.root)
    msg = json.loads(r.stdout)
    assert msg["recipients"] == ["devops"] and msg["cc"] == ["developer"]
    assert "database-engineer" not in r.stdout and [d["box"] for d in msg["deliveries"]] == ["devops"]
    r = run_agentops("mail", "inbox", "database-engineer", "--json", cwd=ws.root)
    assert [m["subject"] for m in json.loads(r.stdout)] == ["plan"]
    db = ws.db()
    event = json.loads(db.conn.execute("SELECT data FROM events WHERE kind = 'mail'").fetchone()[0])
    db.conn.close()
    assert event["inboxes"] == ["devops", "developer"]  # the mail event names no blind copy


def test_an_unknown_bcc_recipient_is_a_dead_letter(ws):
    path = drop(ws, "to-devops-from-data-engineer-x.email", "Bcc: nobody-here\n\nhi\n")
    report = route_pending(ws, [path])
    assert report.delivered == 0 and report.dead_letters[0]["cause"] == "unknown_recipient"
    assert "Bcc" in report.dead_letters[0]["reason"]
    assert not ws.inbox("devops").exists() or delivered_copies(ws, "devops") == []


def test_rfc2047_subjects_are_shown_and_searched_decoded(ws):
    path = drop(ws, "to-devops-from-data-engineer.email",
                "Subject: =?utf-8?q?Caf=C3=A9_pipeline_r=C3=A9sum=C3=A9?=\n\nsee the numbers\n")
    [mid] = route_pending(ws, [path]).message_ids
    [copy] = delivered_copies(ws, "devops")
    assert copy["Subject"] == "=?utf-8?q?Caf=C3=A9_pipeline_r=C3=A9sum=C3=A9?="  # the file stays RFC 5322
    inbox = run_agentops("mail", "inbox", "devops", cwd=ws.root)
    assert "Café pipeline résumé" in inbox.stdout and "=?utf-8" not in inbox.stdout
    thread = run_agentops("mail", "thread", mid, cwd=ws.root)
    assert "Subject: Café pipeline résumé" in thread.stdout
    found = run_agentops("mail", "search", "résumé", "--json", cwd=ws.root)
    assert [m["subject"] for m in json.loads(found.stdout)] == ["Café pipeline résumé"]


def test_an_encoded_subject_cannot_smuggle_a_line_break_into_the_display(ws):
    path = drop(ws, "to-devops-from-data-engineer.email", "Subject: =?utf-8?q?a=0AFrom:_ceo?=\n\nhi\n")
    [mid] = route_pending(ws, [path]).message_ids
    r = run_agentops("mail", "read", mid, cwd=ws.root)
    assert "Subject: a From: ceo" in r.stdout and "\nFrom: ceo" not in r.stdout


def test_send_with_bcc_from_the_cli(ws):
    r = run_agentops("mail", "send", "--from", "devops", "--to", "developer", "--bcc", "database-engineer",
                     "-s", "quiet", "--body", "between us")
    assert r.returncode == 0, r.stderr
    for agent in ("developer", "database-engineer"):
        copy = next(iter(mailbox.Maildir(ws.inbox(agent), create=False)))
        assert copy["Subject"] == "quiet" and copy["Bcc"] is None and copy["To"] == "developer"
    db = ws.db()
    row = db.conn.execute("SELECT recipients, cc FROM messages WHERE subject = 'quiet'").fetchone()
    db.conn.close()
    assert "database-engineer" not in row[0] + row[1]
    r = run_agentops("mail", "send", "--from", "devops", "--to", "developer", "--bcc", "nobody", "-s", "x", "--body", "y")
    assert r.returncode == 5 and "unknown address 'nobody'" in r.stderr
