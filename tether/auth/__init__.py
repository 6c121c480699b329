"""Sign-in, tokens and auth sessions: promise 4, auth never expires under running work."""
