"""Issue 13 item 6 across the services: an LA uploads its file with ``cld-release: r1`` through the ingest API and
the validation service checks every row against Release 1; the same rows without the header are checked against
the release in force for their period (2025/26: Release 2)."""

from __future__ import annotations

from tests.component.test_ingest_service import csv_text
from tests.component.test_validation_release import r1_record
from tests.mesh import test_mesh_in_memory
from tests.mesh.test_mesh_in_memory import Mesh

mesh = test_mesh_in_memory.mesh  # the same in-memory mesh (by assignment: no F811)


async def test_an_upload_declared_release_1_is_checked_against_release_1(mesh: Mesh) -> None:
    text = csv_text([r1_record(event_reference=f"EV{i}") for i in range(3)]).encode()
    declared = await mesh.client.post(
        "/v1/uploads?la=318", content=text, headers={"content-type": "text/csv", "cld-release": "r1"}
    )
    undeclared = await mesh.client.post("/v1/uploads?la=318", content=text, headers={"content-type": "text/csv"})
    assert (declared.status_code, undeclared.status_code) == (202, 202)

    bodies = mesh.validated.bodies
    assert [b["release"] for b in bodies] == ["r1"] * 3 + ["r2"] * 3
    assert not any(f["validity"] == "Failed: Release 1" for b in bodies[:3] for f in b["findings"])
    assert all(any(f["validity"] == "Failed: Release 1" for f in b["findings"]) for b in bodies[3:])
    assert mesh.deadletters.bodies == []
