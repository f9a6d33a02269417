"""Patrol tasks: the two state machines, the desk's life cycle of a task (create, edit while
draft, publish, cancel), recurring series, closing tasks after their window, reminders, the
volunteer's side (open tasks, taking a place, declining, withdrawing), and the views of the
board and of a volunteer's service.

State machines (every change goes through :func:`move_task` / :func:`move_assignment` (or
``common.moved_assignment``, the same by id, returning the row), a conditional UPDATE on the
expected status, so two requests or jobs racing on the same row cannot both win)::

    task        draft → published → in_progress → completed | unserved
                draft | published | in_progress → cancelled
                published → unserved                        (closed after a window nobody used)

A task closed after its window is ``completed`` when at least one volunteer served on it (checked
in, so the close checks them out with their minutes) and ``unserved`` when nobody did: the
reports, the desk board, the volunteer's history and the exports count the two apart.

    assignment  invited → accepted | declined | expired | cancelled
                accepted → checked_in | cancelled | no_show
                checked_in → completed
                declined | expired | cancelled → invited    (the desk invites again)
                declined | expired | cancelled → accepted   (an open task, signed up again)

The package is split by subject; callers use the names re-exported here
(``from yijing.services import tasks as task_service; task_service.accept(...)``). Each module
imports only those above it:

* ``common``: the state machines and their labels, look-ups, what notifications show, the
  dispatch job;
* ``board``: the desk's board and one task with its counts;
* ``lifecycle``: starting and closing tasks, completing an assignment, reminders;
* ``authoring``: create, edit, publish, cancel;
* ``series``: recurring series and their occurrences;
* ``history``: service totals, a volunteer's history, the volunteer's own tasks;
* ``signup``: the volunteer's side — open tasks, one task, accept, decline, withdraw.

Invitations by the desk and nearby rings live in :mod:`yijing.services.dispatch`; check-in,
check-out and track points in :mod:`yijing.services.onsite`.
"""

from yijing.services.tasks.authoring import (
    EDITABLE_FIELDS,
    IN_PROGRESS_EDITABLE,
    MAX_WINDOW,
    NOTIFIED_FIELDS,
    PLACE_FIELDS,
    PUBLISHED_EDITABLE,
    cancel,
    create_task,
    publish,
    update_task,
)
from yijing.services.tasks.board import (
    Counts,
    TaskRow,
    assignments_for_staff,
    board,
    counts_for,
    detail_for_staff,
    row_for,
)
from yijing.services.tasks.common import (
    ASSIGNMENT_FLOW,
    ASSIGNMENT_STATES,
    ASSIGNMENT_STATUS_LABELS,
    LIVE,
    MODE_LABELS,
    TASK_FLOW,
    TASK_PAGE,
    TASK_STATES,
    TASK_STATUS_LABELS,
    A,
    RingHint,
    S,
    config,
    dispatch_job,
    enqueue_dispatch,
    get_task,
    kind_label,
    load_for_staff,
    local_text,
    move_assignment,
    move_task,
    my_volunteer,
    notification_data,
    ring_hint,
    task_page,
)
from yijing.services.tasks.history import (
    ServiceTotals,
    VolunteerHistory,
    my_assignments,
    my_service,
    service_totals,
    volunteer_history,
)
from yijing.services.tasks.lifecycle import (
    close_finished_tasks,
    close_task,
    complete_assignment,
    points_source_key,
    send_reminders,
    service_minutes,
    start_due_tasks,
)
from yijing.services.tasks.series import (
    create_series,
    end_series,
    generate_occurrences,
    list_series,
    occurrence_window,
)
from yijing.services.tasks.signup import (
    FAR,
    MAX_CANDIDATES,
    Seeker,
    TaskView,
    VolunteerFacts,
    accept,
    decline,
    misfit_reason,
    open_tasks,
    seeker_for,
    task_for_volunteer,
    withdraw,
)

__all__ = [
    "ASSIGNMENT_FLOW",
    "ASSIGNMENT_STATES",
    "ASSIGNMENT_STATUS_LABELS",
    "EDITABLE_FIELDS",
    "FAR",
    "IN_PROGRESS_EDITABLE",
    "LIVE",
    "MAX_CANDIDATES",
    "MAX_WINDOW",
    "MODE_LABELS",
    "NOTIFIED_FIELDS",
    "PLACE_FIELDS",
    "PUBLISHED_EDITABLE",
    "TASK_FLOW",
    "TASK_PAGE",
    "TASK_STATES",
    "TASK_STATUS_LABELS",
    "A",
    "Counts",
    "RingHint",
    "S",
    "Seeker",
    "ServiceTotals",
    "TaskRow",
    "TaskView",
    "VolunteerFacts",
    "VolunteerHistory",
    "accept",
    "assignments_for_staff",
    "board",
    "cancel",
    "close_finished_tasks",
    "close_task",
    "complete_assignment",
    "config",
    "counts_for",
    "create_series",
    "create_task",
    "decline",
    "detail_for_staff",
    "dispatch_job",
    "end_series",
    "enqueue_dispatch",
    "generate_occurrences",
    "get_task",
    "kind_label",
    "list_series",
    "load_for_staff",
    "local_text",
    "misfit_reason",
    "move_assignment",
    "move_task",
    "my_assignments",
    "my_service",
    "my_volunteer",
    "notification_data",
    "occurrence_window",
    "open_tasks",
    "points_source_key",
    "publish",
    "ring_hint",
    "row_for",
    "seeker_for",
    "send_reminders",
    "service_minutes",
    "service_totals",
    "start_due_tasks",
    "task_for_volunteer",
    "task_page",
    "update_task",
    "volunteer_history",
    "withdraw",
]
