"""The marketplace domain and its database. No ML, no HTTP."""
