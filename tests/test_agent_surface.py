"""Role exports, prompts and handoffs (SPEC §7)."""

from __future__ import annotations


import yaml

from agentops.exports import AGENTS_MD_BEGIN, claude_tools


def _frontmatter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_claude_tool_mapping():
    assert claude_tools(["vscode", "execute", "read", "agent", "edit", "search", "web", "todo", "orbit/*"]) == [
        "Bash", "Read", "Task", "Edit", "Write", "Grep", "Glob", "WebSearch", "WebFetch", "TodoWrite", "mcp__orbit"]
    assert claude_tools(["orbit/mail_send"]) == ["mcp__orbit__mail_send"]


def test_export_claude(ws, cli):
    r = cli("roles", "export", "--target", "claude")
    assert r.exit_code == 0, r.output
    path = ws.root / ".claude" / "agents" / "data-engineer.md"
    text = path.read_text()
    fm = _frontmatter(text)
    assert fm["name"] == "data-engineer"
    assert "Bash" in fm["tools"] and "mcp__orbit" in fm["tools"] and "execute" not in fm["tools"]
    assert fm["model"] == "inherit"
    assert "## Handoffs" in text and "**Consult Database Engineer** → Database Engineer" in text
    assert "Your address:** `data-engineer`" in text
    assert ".agent/email/inbox/data-engineer/" in text and "agentops orbit log" in text
    assert len(list(path.parent.glob("*.md"))) == 4


def test_export_vscode_keeps_the_frontmatter(ws, cli):
    cli("roles", "export", "--target", "vscode")
    text = (ws.root / ".github" / "agents" / "Data Engineer.agent.md").read_text()
    fm = _frontmatter(text)
    assert fm["argument-hint"].startswith("Build or optimize")
    assert fm["tools"][-1] == "orbit/*" and fm["handoffs"][0]["send"] is True
    assert "## Workspace protocol (agentops)" in text


def test_export_agents_md_keeps_user_text_and_replaces_its_section(ws, cli):
    (ws.root / "AGENTS.md").write_text("# My project\n\nMy own notes.\n")
    cli("roles", "export", "--target", "agents-md")
    cli("roles", "export", "--target", "agents-md")
    text = (ws.root / "AGENTS.md").read_text()
    assert text.startswith("# My project\n\nMy own notes.\n")
    assert text.count(AGENTS_MD_BEGIN) == 1
    assert "### Database Engineer (`database-engineer`)" in text


def test_export_unknown_target(ws, cli):
    r = cli("roles", "export", "--target", "emacs")
    assert r.exit_code == 2 and "unknown export target 'emacs'" in r.output  # a usage error (issue 12.12)


def test_export_uses_roster_addresses(ws, cli):
    ws.config_path.write_text("[[agents]]\nname = 'dana'\nrole = 'Data Engineer'\n"
                              "[[agents]]\nname = 'ops'\nrole = 'DevOps'\n")
    cli("roles", "export", "--target", "claude")
    text = (ws.root / ".claude" / "agents" / "data-engineer.md").read_text()
    assert "Your address:** `dana`" in text and "`ops` (DevOps)" in text


def test_prompt_has_role_protocol_and_unread_mail(ws, cli):
    # dropped as a file the way an agent writes it; `prompt` routes it (no daemon runs here)
    (ws.email_dir / "to-devops-from-data-engineer-capacity.email").write_bytes(
        b"Subject: Need 8 cores\n\nFor the orders backfill.\n")
    r = cli("prompt", "devops")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("# You are DevOps (`devops`)")
    assert "## Workspace protocol (agentops)" in r.output
    assert "### Need 8 cores" in r.output and "For the orders backfill." in r.output
    r = cli("prompt", "nobody")
    assert r.exit_code == 5 and "no agent 'nobody'" in r.output
