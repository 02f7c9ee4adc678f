"""Running the hub's servers locally: the Kafka broker from Maven Central jars, a throwaway
PostgreSQL, free loopback ports, and a traffic simulator. Development and test tooling, kept
apart from the services; installed with the package so it works outside a source checkout."""
