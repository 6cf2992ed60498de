"""CrossCart: shared settings and the `crosscart` command line."""
