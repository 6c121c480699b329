"""durable.py, the one module that calls DBOS: a DBOS lacking an internal it relies on stops
the start with an error naming the version and what is missing, before anything runs."""

from __future__ import annotations

from pathlib import Path

import dbos._dbos
import dbos._sys_db
import pytest
import sqlalchemy as sa
from dbos import error as dbos_error
from dbos._schemas.system_database import SystemSchema

from tether.runtime import durable
from tether.services import Services
from tether.settings import Settings


def test_the_installed_dbos_has_everything_durable_relies_on() -> None:
    assert durable.missing_internals() == []
    durable.check()


@pytest.mark.parametrize(
    "owner, name, named",
    [
        (dbos._dbos, "_get_dbos_instance", "dbos._dbos._get_dbos_instance"),
        (dbos._dbos.DBOS, "_sys_db", "dbos.DBOS._sys_db"),
        (
            dbos._sys_db.SystemDatabase,
            "reenqueue_for_recovery",
            "dbos._sys_db.SystemDatabase.reenqueue_for_recovery",
        ),
        (
            dbos_error,
            "DBOSAwaitedWorkflowCancelledError",
            "dbos.error.DBOSAwaitedWorkflowCancelledError",
        ),
    ],
)
def test_a_missing_internal_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, named: str
) -> None:
    monkeypatch.delattr(owner, name)
    with pytest.raises(durable.IncompatibleDBOS) as info:
        durable.check()
    message = str(info.value)
    assert f"DBOS ({durable.version()})" in message
    assert named in message


def test_a_missing_column_of_workflow_status_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = sa.Table(
        "workflow_status",
        sa.MetaData(),
        sa.Column("workflow_uuid", sa.Text),
        sa.Column("status", sa.Text),
        sa.Column("executor_id", sa.Text),
    )
    monkeypatch.setattr(SystemSchema, "workflow_status", table)
    with pytest.raises(durable.IncompatibleDBOS, match=r"dbos\.workflow_status\.queue_name"):
        durable.check()


async def test_the_services_refuse_to_start_on_such_a_dbos(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delattr(dbos._sys_db.SystemDatabase, "reenqueue_for_recovery")
    svc = Services(Settings(data_dir=tmp_path / "data"))
    try:
        with pytest.raises(durable.IncompatibleDBOS, match="reenqueue_for_recovery"):
            await svc.start()
        assert svc.runtime is None and svc.auth is None  # stopped before anything ran
    finally:
        await svc.db.close()
