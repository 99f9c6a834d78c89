"""Alembic migrations of the catalog schema (see dvmset.catalog: upgrade with `vidmusician db upgrade`)."""
