"""What every stage shares: the schema (one place for a column), parameters, case identity, pure metrics,
typed warnings, errors, the clock, paths, the cache, and the one table of every plug-in."""
