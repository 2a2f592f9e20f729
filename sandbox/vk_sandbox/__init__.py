"""The sandbox (distribution vk-eci-sandbox): a local API server and ECI simulator. Never imported by the product."""
