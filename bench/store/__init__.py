"""Run directories: written incrementally as cases finish, and read back (one reader for every command)."""
