"""Elastic scheduling: the profile (profiles.py), the admission webhook (webhook.py, its certificate in
certs.py) and the burst controller (burst.py), with the virtual node as they target it (target.py), the
JSON Patch operations they share (patches.py) and the namespaces' labels (namespaces.py). See docs/elastic.md."""
