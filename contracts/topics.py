"""Kafka topic names. The version suffix changes only with an incompatible wire format."""

INTERACTIONS_TOPIC = "sb.interactions.v1"
DEADLETTER_TOPIC = "sb.deadletter.v1"
OUTBOUND_TOPIC = "sb.outbound.v1"
ROUTING_TOPIC = "sb.routing.v1"
PRESENCE_TOPIC = "sb.presence.v1"
# Internal to the campaign runner: per campaign, how far its sends were produced (compacted;
# written in the same Kafka transaction as the commands it counts).
CAMPAIGN_PROGRESS_TOPIC = "sb.campaign-progress.v1"
