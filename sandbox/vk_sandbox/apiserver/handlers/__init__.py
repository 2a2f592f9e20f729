"""The HTTP side of the sandbox API server, one module per kind of request; imports only go downwards.

``router`` (authenticate, authorize, pick a handler) imports the handlers: ``nonresource`` (version, health,
discovery, OpenAPI), ``reads`` (get, list, watch), ``writes`` (create, update, patch; admission's one place),
``deletes`` (delete, deletecollection), ``subresources`` (binding, eviction, token, scale), ``reviews`` (token and
access reviews) and ``kubelet`` (log, exec, attach, port-forward, node proxy). They share ``request`` (paths, bodies,
flags) and ``response`` (JSON, content negotiation) and get only the narrow contexts of ``..context``.
"""
