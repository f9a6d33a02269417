"""The scenario registry: name → scenario.

A scenario is any object with ``name``, ``description`` and ``needs_app`` and either

* ``setup(ctx) -> Request`` (an HTTP scenario, see ``bench.harness.HttpScenario``): it prepares state
  over HTTP and returns the request wrk sends; it also names the ``baseline`` (a key of
  ``bench.harness.BASELINES``) its ratio is computed against; or
* ``run(ctx) -> list[Result]`` (see ``bench.harness.RunScenario``): it measures itself, e.g. Redis
  GEOSEARCH timed from Python with ``bench.harness.time_calls``, or several wrk runs through
  ``ctx.measure_http``. Set ``needs_app = False`` if it does not need the app or fake WeChat.

To add one: write ``bench/scenarios/<name>.py`` exposing ``SCENARIO`` (or a list ``SCENARIOS``) and
add it to ``_MODULES``. A module may also expose ``GROWTH``, a list of ``bench.harness.Growth``: the
hot paths growth mode measures at several sizes.
"""

from __future__ import annotations

from bench.harness import Growth, Scenario
from bench.scenarios import fanout, feed, me, on_duty, reports, tasks

_MODULES = [me, on_duty, tasks, feed, fanout, reports]

SCENARIOS: dict[str, Scenario] = {}
for _module in _MODULES:
    for _scenario in getattr(_module, "SCENARIOS", None) or [_module.SCENARIO]:
        if _scenario.name in SCENARIOS:
            raise RuntimeError(f"duplicate scenario name {_scenario.name!r}")
        SCENARIOS[_scenario.name] = _scenario


#: Growth mode's hot paths (``GROWTH`` lists of the modules, see bench/README.md "Growth").
GROWTH: dict[str, Growth] = {}
for _module in _MODULES:
    for _growth in getattr(_module, "GROWTH", []):
        if _growth.path in GROWTH:
            raise RuntimeError(f"duplicate growth path {_growth.path!r}")
        GROWTH[_growth.path] = _growth


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
