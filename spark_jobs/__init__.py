"""The processing side: Spark batch and streaming jobs sharing one set of cleaning functions (cleaning.py)."""
