"""Background jobs run by RQ. Jobs are module-level functions taking ids, never ORM objects."""
