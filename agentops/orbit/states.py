"""The run state machine (as Airflow's task-instance states), enforced when a run event is written.

Within one attempt a run (or task run) moves along TRANSITIONS; logging the state it is already in
is accepted (a repeat changes nothing). The first event of a run may be any state (an agent may
only report the outcome). A new attempt (attempt > current) starts afresh from any state; leaving
`up_for_retry` for `queued`/`running` without an attempt number is that new attempt (attempt + 1).
Going back to an older attempt is refused.
"""

from __future__ import annotations

from typing import Literal, get_args

from agentops.errors import ValidationError

RunState = Literal["queued", "running", "succeeded", "failed", "up_for_retry", "upstream_failed", "skipped",
                   "canceled"]
STATES: tuple[str, ...] = get_args(RunState)  # the one list of run states (events, MCP, CLI help)

TERMINAL = frozenset({"succeeded", "failed", "upstream_failed", "skipped", "canceled"})

TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "failed", "upstream_failed", "skipped", "canceled"}),
    "running": frozenset({"succeeded", "failed", "up_for_retry", "skipped", "canceled"}),
    "up_for_retry": frozenset({"failed", "canceled"}),  # + queued/running as the next attempt
    "succeeded": frozenset(),
    "failed": frozenset(),
    "upstream_failed": frozenset(),
    "skipped": frozenset(),
    "canceled": frozenset(),
}

RETRY_STARTS = frozenset({"queued", "running"})


def next_attempt(label: str, current: str | None, current_attempt: int | None, new: str,
                 attempt: int | None) -> int:
    """The attempt number the new state belongs to, or ValidationError when the move is illegal.

    `label` names the run in the message (`pipeline orders run r1 task load`).
    """
    if current is None:
        return attempt or 1
    cur_attempt = current_attempt or 1
    if attempt is not None and attempt > cur_attempt:
        return attempt
    if attempt is not None and attempt < cur_attempt:
        raise ValidationError(
            f"{label}: attempt {attempt} is older than the current attempt {cur_attempt} ({current})",
            hint=f"log attempt {cur_attempt} or a new attempt {cur_attempt + 1}")
    if new == current or new in TRANSITIONS[current]:
        return cur_attempt
    if current == "up_for_retry" and new in RETRY_STARTS and attempt is None:
        return cur_attempt + 1
    if new in RETRY_STARTS:
        hint = f"a retry is a new attempt: log it with attempt {cur_attempt + 1}"
    else:
        allowed = sorted(TRANSITIONS[current])
        hint = f"from {current} it may go to {', '.join(allowed)}" if allowed else f"{current} is final for attempt {cur_attempt}"
    raise ValidationError(f"{label}: illegal transition {current} -> {new} (attempt {cur_attempt})", hint=hint)
