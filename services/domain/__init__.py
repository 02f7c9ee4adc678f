"""The pure domain: the Customer aggregate. Imports no Kafka, HTTP or database code."""

from services.domain.customer import Customer, customer_id_for

__all__ = ["Customer", "customer_id_for"]
