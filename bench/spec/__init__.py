"""What to run: workloads (a TOML file, its matrix expanded), suites, models, traces and seeded prompts."""
