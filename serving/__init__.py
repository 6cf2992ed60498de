"""The FastAPI app: thin routers over `commerce/` and the loaded models."""
