-- The Prefect server's own database beside the catalog (both keep an alembic_version table).
CREATE DATABASE prefect OWNER dvm;
