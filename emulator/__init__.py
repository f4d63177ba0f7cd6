"""Posting emulator: samples rows of the MySQL source and posts them as users' posts (SPEC.md §2)."""
