"""File sources: CSV dialects, encodings, headers, gzip, Parquet and globs; every bad file says what and where."""

import gzip

import pandas as pd
import pytest

from loopml.data import read_columns, read_source
from loopml.data.sources import FileSource, open_source
from loopml.errors import DataError
from loopml.spec import FileSourceSpec


def _open(tmp_path, path, **options):
    return open_source(FileSourceSpec(name="survey", path=path, **options), tmp_path)


def test_semicolon_csv_is_sniffed(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("age;city;y\n31;Lyon;yes\n45;Nice;no\n")
    frame = read_source(path)
    assert list(frame.columns) == ["age", "city", "y"]
    assert frame["age"].tolist() == [31, 45]
    assert read_columns(path) == ["age", "city", "y"]


def test_latin1_csv_falls_back_and_says_so(tmp_path):
    (tmp_path / "fr.csv").write_bytes("ville,prix\nOrléans,3\nSète,4\n".encode("latin-1"))
    source = _open(tmp_path, "fr.csv")
    assert source.read()["ville"].tolist() == ["Orléans", "Sète"]
    assert source.details["encoding"] == "latin-1"


def test_latin1_bytes_after_the_sniffed_sample_still_fall_back(tmp_path):
    rows = "".join(f"{i},plain\n" for i in range(12_000))  # past the 64 KiB sample
    (tmp_path / "late.csv").write_bytes(("id,name\n" + rows + "99,Sète\n").encode("latin-1"))
    source = _open(tmp_path, "late.csv")
    assert source.read()["name"].iloc[-1] == "Sète"
    assert source.details["encoding"] == "latin-1"


def test_given_encoding_that_does_not_fit_is_refused(tmp_path):
    (tmp_path / "fr.csv").write_bytes("ville\nOrléans\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"fr.csv cannot be decoded as utf-8; fix `encoding:`"):
        _open(tmp_path, "fr.csv", encoding="utf-8").read()


def test_headerless_csv_gets_numbered_columns(tmp_path):
    (tmp_path / "raw.csv").write_text("1,2.5,yes\n3,4.5,no\n")
    source = _open(tmp_path, "raw.csv")
    assert source.columns() == ["col_0", "col_1", "col_2"]
    assert source.read()["col_2"].tolist() == ["yes", "no"]
    assert source.details["header"] is False


def test_header_false_keeps_the_first_row_as_data(tmp_path):
    (tmp_path / "raw.csv").write_text("a,b\nc,d\n")
    frame = _open(tmp_path, "raw.csv", header=False).read()
    assert frame["col_0"].tolist() == ["a", "c"]


def test_gzip_csv_is_read(tmp_path):
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("a,b\n1,x\n2,y\n")
    assert read_source(path).shape == (2, 2)
    assert read_columns(path) == ["a", "b"]


def test_parquet_is_read_with_its_row_count(tmp_path):
    path = tmp_path / "data.parquet"
    pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]}).to_parquet(path, index=False)
    assert read_source(path)["a"].tolist() == [1.5, 2.5]
    assert read_columns(path) == ["a", "b"]
    assert _open(tmp_path, "data.parquet").count() == 2


def test_glob_of_csv_parts_is_read_in_path_order(tmp_path):
    for i in (2, 0, 1):
        (tmp_path / f"part-{i}.csv").write_text(f"id,v\n{i}0,a\n{i}1,b\n")
    source = _open(tmp_path, "part-*.csv")
    assert source.read()["id"].tolist() == [0, 1, 10, 11, 20, 21]
    assert (source.count(), source.details["files"]) == (6, 3)


def test_glob_part_with_other_columns_is_named(tmp_path):
    (tmp_path / "p1.csv").write_text("id,v\n1,a\n")
    (tmp_path / "p2.csv").write_text("id,w\n2,b\n")
    with pytest.raises(DataError, match=r"p2.csv does not have the columns of p1.csv: missing v; extra w"):
        _open(tmp_path, "p*.csv").read()


def test_glob_without_a_match_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"source 'survey': no file matches 'exports/\*.csv'"):
        _open(tmp_path, "exports/*.csv").columns()


@pytest.mark.parametrize("text, line, found", [
    ("a,b,c\n1,2,3\n4,5\n6,7,8\n", 3, 2),
    ('a,b,c\n1,"two\nlines",3\n\n4,5,6,7\n', 5, 4),
])
def test_ragged_csv_names_file_line_and_field_counts(tmp_path, text, line, found):
    (tmp_path / "ragged.csv").write_text(text)
    with pytest.raises(DataError, match=rf"source 'survey': ragged.csv line {line}: expected 3 fields "
                                        rf"\(as in the header\), found {found}"):
        _open(tmp_path, "ragged.csv").read()


def test_read_with_columns_limit_and_since(tmp_path):
    (tmp_path / "orders.csv").write_text("id,day,amount\n1,2024-01-03,5\n2,2024-01-01,7\n3,2024-01-05,9\n")
    source = _open(tmp_path, "orders.csv", incremental={"column": "day"})
    assert source.read(columns=["id"], since="2024-01-02")["id"].tolist() == [1, 3]
    assert source.read(limit=2)["id"].tolist() == [2, 1]  # oldest first, so `since` the last one continues
    assert source.newest() == "2024-01-05"


def test_since_without_incremental_is_refused(tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    with pytest.raises(DataError, match=r"since '1'\) needs `incremental: \{column: COLUMN\}`"):
        _open(tmp_path, "a.csv").read(since="1")


def test_unknown_column_suggests_a_close_one(tmp_path):
    (tmp_path / "a.csv").write_text("amount,y\n1,2\n")
    with pytest.raises(DataError, match=r"no column 'amout'; did you mean 'amount'\? columns: amount, y"):
        _open(tmp_path, "a.csv").read(columns=["amout"])


def test_explicit_format_overrides_suffix(tmp_path):
    path = tmp_path / "export.dat"
    path.write_text("a,b\n1,2\n")
    assert read_source(path, format="csv").shape == (1, 2)


def test_unknown_suffix_names_the_allowed_formats(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match=r"data.xlsx: cannot tell the format .*\.csv.*\.parquet.*set `format:`"):
        read_columns(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"source 'nope': file not found: .*nope.csv; check the source's `path:`"):
        read_source(tmp_path / "nope.csv")


def test_empty_file_has_no_rows(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty.csv has no rows \(the file is empty\)"):
        read_source(tmp_path / "empty.csv")


def test_header_only_csv_has_no_rows(tmp_path):
    (tmp_path / "head.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"source 'head' has no rows \(file head.csv\)"):
        read_source(tmp_path / "head.csv")


def test_broken_parquet_is_an_error(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"bad.parquet is not a readable Parquet file"):
        read_source(tmp_path / "bad.parquet")


def test_open_source_picks_the_kind_and_describes_it(tmp_path):
    source = _open(tmp_path, "data/x.csv")
    assert isinstance(source, FileSource)
    assert repr(source) == "<FileSource 'survey': file data/x.csv>"
