"""kubernetes_asyncio client factory, watch helper and event recorder."""
