"""One small state-machine helper for every status that moves: tasks, assignments, clues,
volunteers, messages.

Each service declares its machine once, as a table "from this status, these statuses", with the
labels people read; a move the table does not allow raises :class:`IllegalTransition` (409,
``illegal_transition``) with one message pattern, in Chinese:

    线索当前为「已办结」，不能改为「处理中」        (the default: the target status)
    义警当前为「已通过」，不能审核                  (``action=``: what the person tried)

``only_from`` narrows a move to some of the statuses the table allows it from, for an action that
means something narrower than the move (reinstating reaches "approved" only from "suspended").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from yijing.errors import Conflict


class IllegalTransition(Conflict):
    """A status change the state machine does not allow from the current status."""

    code = "illegal_transition"


@dataclass(frozen=True)
class StateMachine:
    """``subject`` names the thing in messages (``线索``); ``transitions`` maps each status to the
    statuses it may move to; ``labels`` gives each status the words people read."""

    subject: str
    transitions: Mapping[str, frozenset[str]]
    labels: Mapping[str, str]

    def allowed(self, current: str) -> frozenset[str]:
        """The statuses ``current`` may move to."""
        return self.transitions.get(current, frozenset())

    def can(self, current: str, to: str, *, only_from: Iterable[str] | None = None) -> bool:
        if only_from is not None and current not in set(only_from):
            return False
        return to in self.allowed(current)

    def require(
        self, current: str, to: str, *, action: str | None = None, only_from: Iterable[str] | None = None
    ) -> None:
        """Raise :class:`IllegalTransition` unless ``current`` may move to ``to``."""
        if not self.can(current, to, only_from=only_from):
            raise IllegalTransition(self.refusal(current, to, action=action))

    def refusal(self, current: str, to: str, *, action: str | None = None) -> str:
        """``{subject}当前为「{current}」，不能{action or 改为「{to}」}``."""
        tried = action or f"改为「{self._label(to)}」"
        return f"{self.subject}当前为「{self._label(current)}」，不能{tried}"

    def _label(self, status: str) -> str:
        return self.labels.get(status, str(status))
