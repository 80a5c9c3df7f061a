"""Headless subcommands of `relcomm`, one module each."""
