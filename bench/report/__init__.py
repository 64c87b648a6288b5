"""Formats, never computes: terminal tables, markdown/csv, the HTML report, plots, the trend page."""
