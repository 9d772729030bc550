"""The filter chain: the internal call, the filters, and the one function that orders them."""
