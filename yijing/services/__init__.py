"""Services: the rules and the transactions. They take plain values and ids, never the request."""
