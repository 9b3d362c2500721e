"""Writes INbreast.xls beside this script: the spreadsheet `dataset_trees.inbreast_tree` writes as INbreast.csv, laid
out as the INbreast release's INbreast.xls (Excel 97-2003, sheet "Sheet1", header row; file name, acquisition date,
ACR and whole BI-RADS stored as numbers, "4a"-style BI-RADS as text; two rows below the table that name no image).
The suite reads the checked-in file (`test_adapters.py`); writing it needs xlwt, which the suite does not:

    pip install xlwt==1.3.0 && python training/tests/data/make_inbreast_xls.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def write_xls(csv_text: str, out: Path) -> None:
    """The ';'-separated INbreast.csv text as an .xls workbook at out."""
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Sheet1")
    lines = [line.split(";") for line in csv_text.splitlines() if line]
    for r, values in enumerate(lines + [[], [f"{len(lines) - 1} images"]]):
        for c, value in enumerate(values):
            is_number = r > 0 and isinstance(value, str) and value.isdigit()
            sheet.write(r, c, int(value) if is_number else value)
    book.save(str(out))


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    from dataset_trees import inbreast_tree, small_mammograms
    from training_helpers import real_mammogram_paths

    with tempfile.TemporaryDirectory() as tmp:
        smalls = small_mammograms(real_mammogram_paths(), Path(tmp) / "smalls")
        root, _ = inbreast_tree(Path(tmp), smalls)
        write_xls((root / "INbreast.csv").read_text(), HERE / "INbreast.xls")
    print(HERE / "INbreast.xls")


if __name__ == "__main__":
    main()
