"""The platform's apps: the query API, the figures and the plant dashboard. They only read."""
