"""The database: typed models, sessions and Alembic migrations (SQLite embedded, PostgreSQL in production)."""
