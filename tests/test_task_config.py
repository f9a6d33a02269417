"""The patrol-task settings: defaults, parsing and the values refused."""

from __future__ import annotations

import pytest

from yijing.config import Config, ConfigError


def test_defaults_suit_a_laptop():
    config = Config.from_env({})
    assert config.task_nearby_radius_m == 3000
    assert config.task_geofence_tolerance_m == 50 and config.task_geofence_max_accuracy_m == 100
    assert config.task_checkin_early_minutes == 30
    assert config.dispatch_ring_radii_m == (1000, 3000, 5000, 10000)
    assert config.dispatch_max_radius_m == 10000 and config.dispatch_ring_timeout_seconds == 120
    assert config.dispatch_no_show_weight == 2.0


def test_settings_are_read_from_the_environment():
    config = Config.from_env(
        {
            "DISPATCH_RING_RADII_M": "500, 2000,8000",
            "DISPATCH_MAX_RADIUS_M": "6000",
            "DISPATCH_RING_TIMEOUT_SECONDS": "45",
            "TASK_NEARBY_RADIUS_M": "1500",
            "DISPATCH_NO_SHOW_WEIGHT": "0.5",
        }
    )
    assert config.dispatch_ring_radii_m == (500, 2000, 8000)
    assert config.dispatch_max_radius_m == 6000 and config.dispatch_ring_timeout_seconds == 45
    assert config.task_nearby_radius_m == 1500 and config.dispatch_no_show_weight == 0.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISPATCH_RING_RADII_M", "3000,1000"),
        ("DISPATCH_RING_RADII_M", "1000,1000"),
        ("DISPATCH_RING_RADII_M", "0,1000"),
        ("DISPATCH_RING_RADII_M", "1km,3km"),
        ("DISPATCH_RING_TIMEOUT_SECONDS", "1"),
        ("DISPATCH_NO_SHOW_WEIGHT", "-1"),
        ("TASK_RECURRENCE_HORIZON_DAYS", "0"),
    ],
)
def test_bad_values_are_refused(name, value):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})


def test_the_largest_radius_is_always_the_last_ring(app_ctx, monkeypatch):
    import dataclasses

    from yijing.services import dispatch

    config = app_ctx.config["YIJING"]
    assert dispatch.ring_radii() == [1000, 3000, 5000, 10000]
    monkeypatch.setitem(app_ctx.config, "YIJING", dataclasses.replace(config, dispatch_max_radius_m=4000))
    assert dispatch.ring_radii() == [1000, 3000, 4000]
    monkeypatch.setitem(app_ctx.config, "YIJING", dataclasses.replace(config, dispatch_max_radius_m=20000))
    assert dispatch.ring_radii() == [1000, 3000, 5000, 10000, 20000]
