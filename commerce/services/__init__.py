"""Use cases over a Session: what the API routers and CLI call.

Functions never commit. Run them inside `commerce.db.transaction(factory)` (or commit yourself): any
DomainError leaves the caller to roll back, which changes nothing.
"""
