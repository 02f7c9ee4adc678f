"""Generate the committed JSON Schemas and AsyncAPI document from the models.

``python -m contracts.schema_gen`` rewrites ``contracts/schemas/``; ``--check`` only compares and
exits 1, listing the files that drifted. The schemas are the contract other teams read, so they
are generated, never edited by hand.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from contracts.deadletter import DeadLetter
from contracts.interactions import INTERACTION_TYPES, Interaction
from contracts.outbound import SendMessage
from contracts.routing import AgentPresenceChanged, ContactRouted, OfferAnswered
from contracts.topics import (
    DEADLETTER_TOPIC,
    INTERACTIONS_TOPIC,
    OUTBOUND_TOPIC,
    PRESENCE_TOPIC,
    ROUTING_TOPIC,
)

__all__ = ["SCHEMA_DIR", "asyncapi_document", "drifted", "json_schemas", "render", "write_schemas"]

SCHEMA_DIR = Path(__file__).parent / "schemas"
ASYNCAPI_FILE = "asyncapi.json"
_VERSION = "0.1.0"  # the project version in pyproject.toml
_JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_KEY_DOC = "Record key: the normalized party address (the event's `party`), UTF-8 encoded."


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name to JSON Schema: one per event type, the union, and the dead letter."""
    schemas = {
        f"{type_name}.json": cls.model_json_schema()
        for type_name, cls in sorted(INTERACTION_TYPES.items())
    }
    schemas["interaction.json"] = TypeAdapter(Interaction).json_schema()
    schemas["deadletter.json"] = DeadLetter.model_json_schema()
    schemas["message.send.v1.json"] = SendMessage.model_json_schema()
    schemas["agent.presence.v1.json"] = AgentPresenceChanged.model_json_schema()
    return {name: {"$schema": _JSON_SCHEMA_DIALECT, **schema} for name, schema in schemas.items()}


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of Switchboard's topics, built by FastStream without connecting."""
    # Imported here so that importing contracts never pulls in FastStream and aiokafka.
    from faststream import FastStream
    from faststream.kafka import KafkaBroker
    from faststream.specification import AsyncAPI

    broker = KafkaBroker(
        specification_url="127.0.0.1:19092",
        description=(
            "The local development broker (deploy/kafka); other environments set "
            "SWITCHBOARD_KAFKA_BOOTSTRAP."
        ),
    )
    broker.publisher(
        INTERACTIONS_TOPIC,
        schema=Interaction,
        title="interactions",
        description=(
            "Channel adapters publish every contact event here, as JSON, after normalizing it. "
            f"{_KEY_DOC} Keying by party keeps one customer's events in order on one partition."
        ),
    )

    @broker.subscriber(
        INTERACTIONS_TOPIC,
        group_id="sb-recorder",
        title="recorder",
        description=(
            "Consumer group sb-recorder records each event in the event store exactly once "
            "(idempotent on provider_ref) and dead-letters records it cannot parse. "
            f"{_KEY_DOC}"
        ),
    )
    async def record_interaction(event: Interaction) -> None:
        """Documentation stub: the real recorder lives in services/ and this is never run."""

    broker.publisher(
        OUTBOUND_TOPIC,
        schema=SendMessage,
        title="outbound",
        description=(
            "Agents and campaigns ask a channel to send a message; the channel's outbound "
            "adapter sends each command_id at most once and reports message.sent.v1 or a failed "
            f"delivery.status.v1 on {INTERACTIONS_TOPIC}. {_KEY_DOC}"
        ),
    )
    broker.publisher(
        ROUTING_TOPIC,
        schema=ContactRouted | OfferAnswered,
        title="routing",
        description=(
            "Every routing decision: where an inbound contact went (an agent, a queue, "
            "voicemail, a callback), the rule that decided and why. The voice and CTI webhooks "
            "publish a call's decision before they answer, the router service a message's (an "
            "offer, when offer_expires_at is set, answered by offer.answered.v1). The recorder "
            "files each decision and answer in "
            "the customer's history; every gateway instance reads the topic (without a consumer "
            f"group) to push screen pops to its connected agents. {_KEY_DOC}"
        ),
    )
    broker.publisher(
        PRESENCE_TOPIC,
        schema=AgentPresenceChanged,
        title="presence",
        description=(
            "Agents' presence changes (available, busy, away, offline). Compacted and keyed by "
            "the agent's user name: a starting router or gateway reads every agent's latest "
            "presence back from it."
        ),
    )
    broker.publisher(
        DEADLETTER_TOPIC,
        schema=DeadLetter,
        title="deadletter",
        description=(
            "Records a consumer could not process, with their origin and the reason; the "
            "record key is the failed record's key, unchanged."
        ),
    )
    app = FastStream(
        broker,
        specification=AsyncAPI(
            broker,
            title="Switchboard",
            version=_VERSION,
            description="Event-sourced contact-center communication hub: Kafka topics.",
            schema_version="3.0.0",
        ),
    )
    document = app.schema.to_specification().to_jsonable()
    _document_record_keys(document)
    return document


def _document_record_keys(document: dict[str, Any]) -> None:
    """Add the Kafka message binding for the key, which FastStream has no argument for."""
    key_binding = {
        "kafka": {
            "key": {"type": "string", "description": _KEY_DOC},
            "bindingVersion": "0.4.0",
        }
    }
    for name, message in document["components"]["messages"].items():
        if name.startswith(("interactions:", "recorder:", "outbound:", "routing:")):
            message["bindings"] = key_binding


def render(document: dict[str, Any]) -> str:
    """The committed text of a schema file: sorted keys, indent 2, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _generated() -> dict[str, str]:
    files = {name: render(schema) for name, schema in json_schemas().items()}
    files[ASYNCAPI_FILE] = render(asyncapi_document())
    return files


def write_schemas(target: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file into ``target`` and delete stale ones; return the written paths."""
    target.mkdir(parents=True, exist_ok=True)
    files = _generated()
    for stale in sorted(target.glob("*.json")):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in files.items():
        path = target / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def drifted(target: Path = SCHEMA_DIR) -> list[str]:
    """Names of the files in ``target`` that differ from, are missing from, or are not generated."""
    files = _generated()
    on_disk = {path.name for path in target.glob("*.json")}
    changed = [
        name
        for name, text in files.items()
        if name not in on_disk or (target / name).read_text(encoding="utf-8") != text
    ]
    return sorted(changed + sorted(on_disk - files.keys()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.schema_gen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    parser.add_argument("--target", type=Path, default=SCHEMA_DIR, help="schema directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted(args.target)
        if stale:
            print("schemas drifted from the models (run python -m contracts.schema_gen):")
            for name in stale:
                print(f"  {args.target / name}")
            return 1
        print("schemas are up to date")
        return 0
    for path in write_schemas(args.target):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
