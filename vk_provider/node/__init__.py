"""The virtual Node: registration, status, lease and backend ping."""
