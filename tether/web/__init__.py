"""The HTTP face: app factory, routes, problem+json errors, static page."""
