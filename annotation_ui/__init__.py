"""The review tool: a FastAPI app (server-rendered HTML + plain JS) over the catalog's review queue."""
