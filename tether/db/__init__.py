"""Database access: schema, engines and migrations."""
