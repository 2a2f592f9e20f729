"""The ECI backend: SDK client, translation, status mapping, specs, annotations, exec bridge, metrics."""
