"""The review server's routes, one APIRouter per concern (sign-in, pages, queue, clip media, decisions, agreement)."""
