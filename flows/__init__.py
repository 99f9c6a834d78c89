"""Prefect flows and the `vidmusician` command line: the only layer that orchestrates and reads settings."""
