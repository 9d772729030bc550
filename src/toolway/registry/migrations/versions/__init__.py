"""One module per schema revision, in a single linear chain (0001, 0002, …)."""
