"""Posting emulator: samples rows of the MySQL source and posts them as users' posts (docs/contract.md §2)."""
