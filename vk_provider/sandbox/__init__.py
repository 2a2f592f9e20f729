"""The sandbox: a local API server and ECI simulator. Never imported by the product's other packages."""
