"""What tests and benchmarks share but the pipeline never runs: generated sink files (`synthetic`) and the DuckDB
reference implementation of the cleaning and the queries (`duckdb_reference`). Imported as `tests.support` from the
repo root (pytest's and the benchmarks' path)."""

from pipeline.settings import REPO_ROOT

# Real records in the original pipeline's wire format (one JSON document per line, per table).
SAMPLES_DIR = REPO_ROOT / "tests" / "data" / "samples"
