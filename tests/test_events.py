"""The event vocabulary: one module builds every event type, and the schema,
the README's table and that module name the same types."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from nucleus_trio import events
from nucleus_trio.status import ExitStatus

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "nucleus_trio"
SCHEMA = json.loads(resources.files("nucleus_trio").joinpath("audit.schema.json").read_text())


def readme_types() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("| event_type | when | fields |") :]
    section = section[: section.index("\n\n")]
    found: set[str] = set()
    for line in section.splitlines()[2:]:
        first_cell = line.split("|")[1]
        found.update(re.findall(r"`([a-z_]+)`", first_cell))
    return found


def test_module_schema_and_readme_name_the_same_types() -> None:
    schema_types = set(SCHEMA["properties"]["event_type"]["enum"])
    assert schema_types == set(events.EVENT_TYPES)
    assert readme_types() == set(events.EVENT_TYPES)
    conditioned = set()
    for rule in SCHEMA["allOf"]:
        condition = rule["if"]["properties"]["event_type"]
        conditioned.update(condition.get("enum", [condition.get("const")]))
    assert conditioned == set(events.EVENT_TYPES)


def test_each_event_type_is_spelled_in_one_module() -> None:
    for event_type in sorted(events.EVENT_TYPES):
        homes = [
            path.name
            for path in SRC.glob("*.py")
            if f'"{event_type}"' in path.read_text() or f"'{event_type}'" in path.read_text()
        ]
        assert homes == ["events.py"], (event_type, homes)


def test_one_reaper_and_one_status_fields() -> None:
    assert [p.name for p in SRC.glob("*.py") if "P_ALL" in p.read_text()] == ["reaper.py"]
    assert [p.name for p in SRC.glob("*.py") if "def status_fields" in p.read_text()] == [
        "events.py"
    ]


def every_event() -> list[events.Event]:
    exited = ExitStatus(12, code=3)
    killed = ExitStatus(13, signal=15)
    return [
        events.supervisor_started(1, pid1=True, subreaper=False, pause=False),
        events.container_exec(5, ["sh", "-c", "x"], env_keys=["A"], uid=1, gid=2, groups=[3]),
        events.exec_failed("nope", "No such file or directory", 127),
        events.no_new_privs_set(5),
        events.notify_socket_dropped("NOTIFY_SOCKET='/tmp/x' dropped"),
        events.signal_forwarded(15, -5, received=1),
        events.signal_forwarded(9, 5, reason="kill_after"),
        events.signal_dropped(10),
        events.zombie_reaped(exited),
        events.zombie_reaped(killed),
        events.workload_exited(exited),
        events.workload_exited(killed),
        events.status_lost(5),
        events.workload_restarting(exited, 1, 0.1),
        events.workload_restarting(killed, 2, 0.2),
        events.restart_limit_reached(exited, 5, 60.0),
        events.init_error("boom"),
        events.shutdown_signalled("terminate", 15, [7, 8]),
        events.shutdown_signalled("kill", 9, [8]),
        events.shutdown_complete(0.5, [7, 8], [8], []),
        events.shutdown_survivor(8),
        events.container_stop(143, killed, runtime=1.5),
        events.container_stop(0, None, pause=True),
        events.audit_dropped(3),
    ]


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.event_type)
def test_every_builder_gives_a_valid_record(event: events.Event) -> None:
    record = json.loads(json.dumps(event.record("id", "name")))
    jsonschema.validate(record, SCHEMA)
    assert record["event_type"] in events.EVENT_TYPES
    assert record["is_error"] == (
        event.event_type
        in {
            "exec_failed",
            "status_lost",
            "restart_limit_reached",
            "init_error",
            "shutdown_survivor",
            "audit_dropped",
        }
    )


def test_every_type_has_a_builder_in_the_list() -> None:
    assert {e.event_type for e in every_event()} == set(events.EVENT_TYPES)
