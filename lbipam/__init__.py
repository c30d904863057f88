"""LoadBalancer IP pools. Not built yet (see the README)."""
