"""The kubelet HTTPS API: routes, auth, TLS, streaming protocols and stats."""
