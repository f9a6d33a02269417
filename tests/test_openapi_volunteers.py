"""The volunteers' endpoints are documented in the OpenAPI document, each with a summary."""

from __future__ import annotations

PATHS = {
    "/api/v1/volunteers": {"post"},
    "/api/v1/volunteers/form": {"get"},
    "/api/v1/volunteers/me": {"get", "patch"},
    "/api/v1/volunteers/me/withdraw": {"post"},
    "/api/v1/volunteers/me/card": {"get"},
    "/api/v1/volunteers/me/team": {"get"},
    "/api/v1/volunteers/me/duty": {"get", "post"},
    "/api/v1/volunteers/me/location": {"post"},
    "/api/v1/desk/volunteers": {"get"},
    "/api/v1/desk/volunteers/lookup": {"post"},
    "/api/v1/desk/volunteers/on-duty": {"get"},
    "/api/v1/desk/volunteers/verify": {"get"},
    "/api/v1/desk/volunteers/{volunteer_id}": {"get"},
    "/api/v1/desk/volunteers/{volunteer_id}/review": {"post"},
    "/api/v1/desk/volunteers/{volunteer_id}/suspend": {"post"},
    "/api/v1/desk/volunteers/{volunteer_id}/reinstate": {"post"},
    "/api/v1/desk/volunteers/{volunteer_id}/pii": {"post"},
    "/api/v1/desk/teams": {"get", "post"},
    "/api/v1/desk/teams/{team_id}": {"get", "patch"},
}


def test_every_endpoint_is_documented_with_a_summary(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path, methods in PATHS.items():
        assert path in spec["paths"], path
        operations = spec["paths"][path]
        assert methods <= set(operations), (path, set(operations))
        for method in methods:
            assert operations[method].get("summary"), (path, method)
    volunteer = spec["components"]["schemas"]["Volunteer"]["properties"]
    assert {"name_masked", "id_number_masked", "phone_masked"} <= set(volunteer)
    assert not {"real_name", "id_number", "phone"} & set(volunteer)
