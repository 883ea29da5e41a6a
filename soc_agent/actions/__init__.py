"""Actions: the executor with idempotency, verification and rollback."""
