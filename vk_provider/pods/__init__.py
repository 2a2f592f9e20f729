"""The pod controller: watch, keyed queue, reconcile, delete, GC and events."""
