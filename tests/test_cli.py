"""Operator commands."""

from __future__ import annotations

from sqlalchemy import func, select

from yijing.extensions import db
from yijing.models import Jurisdiction, RoleGrant, User


def test_import_jurisdictions_from_csv(app, tmp_path):
    path = tmp_path / "tree.csv"
    path.write_text(
        "key,parent_key,name,level,code,lat,lng\n"
        "150200,,包头市,city,150200,40.65,109.84\n"
        "150205,150200,石拐区,district,150205,40.67,110.27\n"
        "150205-01,150205,石拐街道,street,,40.68,110.28\n",
        encoding="utf-8",
    )
    result = app.test_cli_runner().invoke(args=["yijing", "import-jurisdictions", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 created" in result.output
    again = app.test_cli_runner().invoke(args=["yijing", "import-jurisdictions", str(path)])
    assert "0 created, 3 updated" in again.output
    with app.app_context():
        street = db.session.scalar(select(Jurisdiction).where(Jurisdiction.key == "150205-01"))
        district = db.session.scalar(select(Jurisdiction).where(Jurisdiction.key == "150205"))
        assert street.path.startswith(district.path) and street.depth == 2


def test_import_refuses_an_unknown_parent(app, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"key": "x", "parent_key": "nope", "name": "X", "level": "street"}]', encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["yijing", "import-jurisdictions", str(path)])
    assert result.exit_code == 1
    assert "上级 nope 不存在" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Jurisdiction)) == 0


def test_create_staff_and_grant(app, client, tree):
    runner = app.test_cli_runner()
    created = runner.invoke(
        args=["yijing", "create-staff", "wang", "--name", "王警官", "--password", "a-long-password"]
    )
    assert created.exit_code == 0, created.output
    granted = runner.invoke(args=["yijing", "grant", "wang", "desk", "150204"])
    assert granted.exit_code == 0, granted.output
    token = client.post(
        "/api/v1/desk/auth/login", json={"username": "wang", "password": "a-long-password"}
    ).get_json()["token"]
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert me["display_name"] == "王警官" and me["grants"][0]["jurisdiction"]["name"] == "青山区"
    short = runner.invoke(args=["yijing", "create-staff", "li", "--password", "short"])
    assert short.exit_code == 1


def test_seed_demo_loads_baotou(app):
    result = app.test_cli_runner().invoke(args=["yijing", "seed-demo"])
    assert result.exit_code == 0, result.output
    assert "demo-admin-2026" in result.output
    with app.app_context():
        districts = set(db.session.scalars(select(Jurisdiction.name).where(Jurisdiction.level == "district")))
        assert districts == {
            "昆都仑区",
            "青山区",
            "东河区",
            "九原区",
            "石拐区",
            "白云鄂博矿区",
            "土默特右旗",
            "固阳县",
            "达尔罕茂明安联合旗",
        }
        for level in ("street", "community", "grid"):
            assert (
                db.session.scalar(
                    select(func.count()).select_from(Jurisdiction).where(Jurisdiction.level == level)
                )
                > 9
            )
        assert db.session.scalar(select(func.count()).select_from(User).where(User.kind == "staff")) == 4
        assert db.session.scalar(select(func.count()).select_from(RoleGrant)) == 4
    again = app.test_cli_runner().invoke(args=["yijing", "seed-demo"])
    assert again.exit_code == 0 and "0 created" in again.output
