"""An embedded Kubernetes API server for tests and the local sandbox."""
