"""What model calls cost: tokens per call, priced by the agents file, and the budgets that
stop a turn before a call it cannot pay for.

Every attempt of a model call that the provider reported usage for (a retried or superseded
attempt too: it was paid for) is one `model.usage` event in the session's log, emitted in
the call's step under the attempt's own key, so a re-run after a crash never records it
twice. The log's commit hook (`db/usage.py`) writes the same numbers to `tether_usage` in the
event's transaction, and adds the cost to the user's month (`tether_usage_months`): sums
per turn and session are read from the first, a budget's month from one row of the second.

Cost = input tokens (cache reads and writes included) × `price_in` + output tokens ×
`price_out`, per million, priced when the call is made. An agent without prices has calls of
unknown cost: they are shown as tokens only and count toward no budget.

Budgets: a session's (set by its owner, `PUT /api/sessions/{id}/budget`) and a user's per
calendar month, UTC (`budget_user`). A call's cost is known only after it, so before each
attempt the turn is refused when what was spent, plus this call's input at `price_in`
(estimated from the request's size), passes a budget: the call is never made. Its output
can still take the spend past the budget, by at most one call's `max_tokens` × `price_out`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tether.errors import ModelFailed

EVENT = "model.usage"
TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def tokens_of(usage: Any) -> dict[str, int]:
    """A pydantic-ai RequestUsage as the counts Tether keeps."""
    return {name: int(getattr(usage, name, 0) or 0) for name in TOKENS}


def cost(counts: dict[str, int], price_in: float | None, price_out: float | None) -> float | None:
    """What the call cost (None: its agent has no prices)."""
    if price_in is None or price_out is None:
        return None
    return (counts["input_tokens"] * price_in + counts["output_tokens"] * price_out) / 1e6


def money(amount: float) -> str:
    """An amount as a person reads it: $1,234.50, $0.05, $0.0042 (as the page words it)."""
    if amount >= 0.1 or amount == 0:
        return f"${amount:,.2f}"
    text = f"{amount:.4f}"
    return "$" + (text[:-2] + text[-2:].rstrip("0") if text.endswith("0") else text)


def month_of(ts: float) -> str:
    """The calendar month (UTC) a time is in, as `tether_usage_months` keys it: "2026-12"."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m")


def month_start(now: float) -> float:
    """The start of the calendar month (UTC) that `now` is in, as a timestamp."""
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


@dataclass(slots=True, frozen=True)
class Spent:
    """What was spent against each budget that applies (None: no such budget)."""

    session_budget: float | None
    session_spent: float
    user_budget: float | None
    user_spent: float


def check(spent: Spent, next_input: float) -> None:
    """Raise ModelFailed, saying which budget and how much was spent, if a call whose input
    is estimated to cost `next_input` would pass a budget."""
    if spent.session_budget is not None and spent.session_spent + next_input > spent.session_budget:
        raise ModelFailed(_refusal("This session's", spent.session_budget, spent.session_spent))
    if spent.user_budget is not None and spent.user_spent + next_input > spent.user_budget:
        raise ModelFailed(
            _refusal("Your monthly", spent.user_budget, spent.user_spent, " this month")
        )


def _refusal(whose: str, budget: float, spent: float, when: str = "") -> str:
    state = "is used up" if spent >= budget else "does not cover the next model call"
    return (
        f"{whose} budget of {money(budget)} {state} ({money(spent)} spent{when}); the model "
        "was not called. Raise the budget to go on."
    )
