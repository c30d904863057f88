"""The only fake kroute's tests allow: a Kubernetes API server (REST + watch) in-process,
driven by the real `kubernetes` client from the tests, the agents and the operator."""
