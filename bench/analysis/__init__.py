"""Reads runs, never measures: compare, the gate, statistics, claims and verdicts, history, cost, Pareto."""
