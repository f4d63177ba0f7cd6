"""What tests and benchmarks share but the pipeline never runs: generated sink files (`synthetic`) and the DuckDB
reference implementation of the cleaning and the queries (`duckdb_reference`). Imported as `tests.support` from the
repo root (pytest's and the benchmarks' path)."""
