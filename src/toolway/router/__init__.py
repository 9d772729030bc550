"""Name resolution, aggregation and fan-out: the terminal stage of the chain."""
