"""Agents, the context they run in, and the DBOS engine underneath."""
