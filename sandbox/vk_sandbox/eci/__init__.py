"""A local ECI OpenAPI simulator that runs container groups as processes (or virtually)."""
