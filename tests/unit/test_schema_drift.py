"""The committed JSON Schemas and AsyncAPI document match the models."""

import json
from pathlib import Path

import pytest

from contracts.schema_gen import (
    ASYNCAPI_FILE,
    SCHEMA_DIR,
    asyncapi_document,
    json_schemas,
    main,
    render,
    write_schemas,
)

REGENERATE = "run `python -m contracts.schema_gen` and commit contracts/schemas/"


def _generated() -> dict[str, object]:
    documents = {**json_schemas(), ASYNCAPI_FILE: asyncapi_document()}
    # Through the renderer and back, so tuples and the like compare as the JSON they become.
    return {name: json.loads(render(document)) for name, document in documents.items()}


def test_committed_schemas_match_the_models() -> None:
    generated = _generated()
    committed = {path.name: json.loads(path.read_text()) for path in SCHEMA_DIR.glob("*.json")}
    missing = sorted(generated.keys() - committed.keys())
    stale = sorted(committed.keys() - generated.keys())
    drifted = sorted(n for n in generated.keys() & committed.keys() if generated[n] != committed[n])
    assert not (missing or stale or drifted), (
        f"schemas drifted from the models (missing {missing}, stale {stale}, changed {drifted}): "
        f"{REGENERATE}"
    )


def test_there_is_a_schema_per_event_type_and_one_for_the_union() -> None:
    names = set(json_schemas())
    assert {"call.ringing.v1.json", "message.received.v1.json", "interaction.json"} <= names


def test_the_asyncapi_document_describes_the_topics_and_the_record_key() -> None:
    document = asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"] == {
        "title": "Switchboard",
        "version": "0.1.0",
        "description": document["info"]["description"],
    }
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {
        "sb.interactions.v1",
        "sb.deadletter.v1",
        "sb.outbound.v1",
        "sb.routing.v1",
        "sb.presence.v1",
    }
    assert "SendMessage" in document["components"]["schemas"]
    assert {"ContactRouted", "AgentPresenceChanged"} <= set(document["components"]["schemas"])
    assert "normalized party address" in document["channels"]["interactions"]["description"]
    assert "sb-recorder" in document["channels"]["recorder"]["description"]
    assert "DeadLetter" in document["components"]["schemas"]


def test_check_reports_drifted_files_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_schemas(tmp_path)
    assert main(["--check", "--target", str(tmp_path)]) == 0
    (tmp_path / "call.ringing.v1.json").write_text("{}\n")
    (tmp_path / "call.teleported.v1.json").write_text("{}\n")
    assert main(["--check", "--target", str(tmp_path)]) == 1
    output = capsys.readouterr().out
    assert "call.ringing.v1.json" in output
    assert "call.teleported.v1.json" in output
    assert "python -m contracts.schema_gen" in output


def test_written_files_have_sorted_keys_and_a_trailing_newline(tmp_path: Path) -> None:
    for path in write_schemas(tmp_path):
        text = path.read_text()
        assert text.endswith("}\n")
        assert text == render(json.loads(text))
