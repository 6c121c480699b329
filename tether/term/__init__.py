"""The terminal client: `tether login`, `sessions`, `run`, `attach`, `chat`, `approve`,
`cancel` and `tail`, on the Python SDK (tether.client). It imports none of the server."""
