"""The one state-machine helper and the machines the services declare with it."""

from __future__ import annotations

import pytest

from yijing.errors import Conflict
from yijing.states import IllegalTransition, StateMachine

LIGHT = StateMachine(
    "信号灯",
    {"red": frozenset({"green"}), "green": frozenset({"amber"}), "amber": frozenset({"red"})},
    {"red": "红灯", "green": "绿灯", "amber": "黄灯"},
)


def test_an_allowed_move_passes_and_a_refused_one_is_a_409_with_the_one_message_pattern():
    LIGHT.require("red", "green")
    with pytest.raises(IllegalTransition) as excinfo:
        LIGHT.require("red", "amber")
    error = excinfo.value
    assert isinstance(error, Conflict) and error.status == 409 and error.code == "illegal_transition"
    assert error.message == "信号灯当前为「红灯」，不能改为「黄灯」"


def test_an_action_names_what_was_tried_and_only_from_narrows_the_move():
    assert LIGHT.can("amber", "red") and not LIGHT.can("amber", "red", only_from=["green"])
    with pytest.raises(IllegalTransition) as excinfo:
        LIGHT.require("amber", "red", action="复位", only_from=["green"])
    assert excinfo.value.message == "信号灯当前为「黄灯」，不能复位"


def test_a_final_status_allows_nothing():
    machine = StateMachine("事", {"open": frozenset({"done"})}, {"open": "进行中", "done": "已完成"})
    assert machine.allowed("done") == frozenset()
    assert not machine.can("done", "open")


@pytest.mark.parametrize(
    ("module", "machine"),
    [
        ("yijing.services.tasks", "TASK_STATES"),
        ("yijing.services.tasks", "ASSIGNMENT_STATES"),
        ("yijing.services.clues", "STATES"),
        ("yijing.services.volunteers", "STATES"),
        ("yijing.services.messages", "STATES"),
    ],
)
def test_every_service_machine_labels_each_status_it_names(module, machine):
    import importlib

    states: StateMachine = getattr(importlib.import_module(module), machine)
    named = set(states.transitions) | {to for targets in states.transitions.values() for to in targets}
    assert named <= set(states.labels), f"{module}.{machine} lacks labels for {named - set(states.labels)}"


def test_the_services_moves_follow_their_tables():
    from yijing.models import ClueStatus, MessageStatus, TaskStatus, VolunteerStatus
    from yijing.services import clues, messages, tasks, volunteers

    assert tasks.TASK_STATES.can(TaskStatus.DRAFT, TaskStatus.PUBLISHED)
    assert not tasks.TASK_STATES.can(TaskStatus.COMPLETED, TaskStatus.CANCELLED)
    assert clues.STATES.can(ClueStatus.SUBMITTED, ClueStatus.ACCEPTED)
    assert not clues.STATES.can(ClueStatus.RESOLVED, ClueStatus.INVESTIGATING)
    assert volunteers.STATES.can(VolunteerStatus.SUSPENDED, VolunteerStatus.APPROVED)
    assert not volunteers.STATES.can(VolunteerStatus.REJECTED, VolunteerStatus.APPROVED)
    with pytest.raises(IllegalTransition) as excinfo:
        messages.STATES.require(MessageStatus.CLOSED, MessageStatus.ANSWERED, action="再回复")
    assert excinfo.value.message == "留言当前为「已关闭」，不能再回复"
