"""The terminal client: `tether login`, `sessions`, `run`, `attach`, `chat`, `approve`,
`cancel` and `tail`, on the Python SDK (tether.client). It imports none of the server.

- `commands.py`: the commands, added to `tether` beside `serve`;
- `common.py`: the signed-in client, the exit codes, failures as one line on stderr;
- `credentials.py`: the sign-ins, in a 0600 file, traded under a file lock;
- `follow.py`: following a session (`attach`, `run`, `tail`);
- `state.py`: what the terminal knows of a session, from its events;
- `view.py`: the live view (tree, progress bars, newest events, connection);
- `chat.py`: `tether chat`.
"""
