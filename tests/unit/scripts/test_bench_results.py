import sys

from pipeline.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts" / "bench"))
from results import record_row


def test_rows_go_after_the_last_row_of_their_section(tmp_path):
    results = tmp_path / "BENCHMARKS.md"
    record_row("## A", "about A\n\n| x |\n|---|", "| 1 |", results)
    record_row("## B", "| y |\n|---|", "| b1 |", results)
    results.write_text(results.read_text().replace("| 1 |\n", "| 1 |\n\nA note under the table.\n"))
    record_row("## A", "ignored", "| 2 |", results)
    assert results.read_text() == (
        "# Benchmarks\n\n## A\n\nabout A\n\n| x |\n|---|\n| 1 |\n| 2 |\n\nA note under the table.\n\n"
        "## B\n\n| y |\n|---|\n| b1 |\n"
    )


def test_rows_go_into_the_sections_results_table_not_a_later_table_of_notes(tmp_path):
    results = tmp_path / "BENCHMARKS.md"
    header = "about A\n\n| x |\n|---|"
    record_row("## A", header, "| 1 |", results)
    results.write_text(results.read_text() + "\nExperiments:\n\n| run | note |\n|---|---|\n| one | kept |\n")
    record_row("## A", header, "| 2 |", results)
    assert results.read_text() == (
        "# Benchmarks\n\n## A\n\nabout A\n\n| x |\n|---|\n| 1 |\n| 2 |\n\nExperiments:\n\n"
        "| run | note |\n|---|---|\n| one | kept |\n"
    )
