"""Readers: format detection, real files, and one test per kind of bad input.

Every bad-input test checks that the message names the file, the line and the field, since that is
what a user needs to fix the file.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest

from generec.data.errors import DataFormatError
from generec.data.formats import (
    detect_format,
    read_interactions,
    read_item_attributes_json,
    read_item_table,
    read_user_table,
)

ATOMIC_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


# ----------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("x.inter", "anything\n", "atomic"),
        ("x.txt", "user_id:token\titem_id:token\n1\t2\n", "atomic"),
        ("x.txt", "1 1 2 3\n2 4 5\n3 6 7 8 9\n", "sequences"),
        ("x.txt", "1 5\n2 6\n3 7\n", "sequences"),  # unique users: one short sequence each
        ("x.txt", "1 5\n1 6\n2 7\n", "pairs"),  # repeated users: pairs
        ("x.txt", "1 5 100\n1 6 101\n2 7 99\n", "pairs"),
        ("x.txt", "1\t5\n2\t6\n", "pairs"),
        ("x.csv", "1,5\n2,6\n", "pairs"),
        ("x.dat", "user item\n1 5\n", "pairs"),
    ],
)
def test_detect_format(tmp_path, name, text, expected):
    assert detect_format(_write(tmp_path, name, text)) == expected


def test_format_argument_overrides_detection(tmp_path):
    p = _write(tmp_path, "x.txt", "1 5\n2 6\n")  # detected as sequences
    raw = read_interactions(p, format="pairs")
    assert raw.users.tolist() == ["1", "2"] and raw.items.tolist() == ["5", "6"]
    with pytest.raises(ValueError, match="unknown interaction format"):
        read_interactions(p, format="parquet")


# ----------------------------------------------------------------------------- good inputs


def test_atomic_ml100k(shared_data_dir):
    raw = read_interactions(shared_data_dir / "ml-100k" / "ml-100k.inter")
    assert len(raw.users) == 100_000
    assert len(set(raw.users)) == 943 and len(set(raw.items)) == 1682
    assert raw.timestamps is not None and raw.timestamps.dtype == np.float64
    assert raw.ratings is not None and set(np.unique(raw.ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (raw.users[0], raw.items[0], raw.timestamps[0], raw.rows[0]) == ("196", "242", 881250949.0, 2)


def test_item_and_user_tables_ml100k(shared_data_dir):
    items = read_item_table(shared_data_dir / "ml-100k" / "ml-100k.item")
    assert items.columns["title"]["1"] == "Toy Story"
    assert items.columns["movie_title"]["1"] == "Toy Story"  # original name kept too
    assert items.columns["class"]["1"] == "Animation Children's Comedy"
    assert len(items.columns["title"]) == 1682
    users = read_user_table(shared_data_dir / "ml-100k" / "ml-100k.user")
    assert users.columns["occupation"]["1"] == "technician" and len(users.columns["age"]) == 943


def test_plain_tsv_item_table_beauty(shared_data_dir):
    t = read_item_table(shared_data_dir / "beauty" / "Beauty_items.tsv")
    assert set(t.columns) == {"asin", "title", "idgenrec_text"}
    assert t.columns["asin"]["1"] == "B004756YJA"
    assert t.columns["title"]["1"].startswith("OPI Nail Lacquer")
    assert sum(v == "" for v in t.columns["title"].values()) == 7  # the README's 7 empty titles


def test_sequences_beauty(shared_data_dir):
    raw = read_interactions(shared_data_dir / "beauty" / "Beauty.txt")
    assert raw.timestamps is None
    assert len(raw.users) == 198_502
    assert len(set(raw.users)) == 22_363 and len(set(raw.items)) == 12_101
    assert raw.users[:5].tolist() == ["1"] * 5 and raw.items[:5].tolist() == ["1", "2", "3", "4", "5"]
    assert raw.rows[:6].tolist() == [1, 1, 1, 1, 1, 2]  # line numbers


def test_atomic_item_list_rows_are_expanded(shared_data_dir):
    """RecBole benchmark file: history list + target -> interactions in order, same as Games.txt."""
    raw = read_interactions(shared_data_dir / "amazon_games_llmrank" / "Games-6k.test.inter")
    first = raw.users == "0"
    assert raw.items[first].tolist() == [str(i) for i in range(15)]  # history 0..13 + target 14
    assert raw.timestamps[first].tolist() == [float(i) for i in range(15)]
    ref = read_interactions(shared_data_dir / "amazon_games_llmrank" / "Games.txt")
    assert np.array_equal(raw.users, ref.users) and np.array_equal(raw.items, ref.items)


def test_item_attributes_json(shared_data_dir):
    t = read_item_attributes_json(shared_data_dir / "beauty" / "Beauty_item2attributes.json")
    assert len(t.columns["attributes"]) == 12_101 and t.columns["attributes"]["4"] == "1 2 3"


def test_pairs_separators_and_header(tmp_path):
    for text in ("user,item,timestamp\n1,5,10\n1,6,9\n", "1\t5\t10\n1\t6\t9\n", "1 5 10\n1 6 9\n"):
        raw = read_interactions(_write(tmp_path, "p.txt", text), format="pairs")
        assert raw.items.tolist() == ["5", "6"] and raw.timestamps.tolist() == [10.0, 9.0]


def test_crlf_and_bom_are_tolerated(tmp_path):
    raw = read_interactions(_write(tmp_path, "s.txt", "\ufeff1 2 3\r\n2 4 5\r\n"))
    assert raw.users.tolist() == ["1", "1", "2", "2"] and raw.items.tolist() == ["2", "3", "4", "5"]


def test_blank_lines_are_skipped_and_counted(tmp_path, caplog):
    p = _write(tmp_path, "s.txt", "1 2 3\n\n2 4 5\n   \n3 6\n")
    with caplog.at_level(logging.WARNING, logger="generec.data.formats"):
        raw = read_interactions(p)
    assert raw.users.tolist() == ["1", "1", "2", "2", "3"]
    assert raw.rows.tolist() == [1, 1, 3, 3, 5]  # real line numbers survive the skip
    assert f"{p}: skipped 2 blank line(s)" in caplog.text


# ----------------------------------------------------------------------------- bad inputs


def _err(path: Path, **kw) -> str:
    with pytest.raises(DataFormatError) as info:
        read_interactions(path, **kw)
    return str(info.value)


def test_non_numeric_timestamp_message_is_exact(tmp_path):
    p = _write(tmp_path, "x.inter", ATOMIC_HEADER + "1\t2\t3\t100\n1\t3\t4\tabc\n")
    assert _err(p) == f"{p}:3: field 'timestamp:float': expected a number, got 'abc'"


def test_non_numeric_rating(tmp_path):
    p = _write(tmp_path, "x.inter", ATOMIC_HEADER + "1\t2\t3\t100\n1\t3\t4\t101\n2\t3\tgood\t102\n")
    assert _err(p) == f"{p}:4: field 'rating:float': expected a number, got 'good'"


def test_non_finite_timestamp(tmp_path):
    p = _write(tmp_path, "x.inter", ATOMIC_HEADER + "1\t2\t3\tnan\n")
    assert _err(p).startswith(f"{p}:2: field 'timestamp:float': expected a finite number")


def test_atomic_row_with_missing_column(tmp_path):
    p = _write(tmp_path, "x.inter", ATOMIC_HEADER + "1\t2\t3\t100\n1\t3\t4\n")
    msg = _err(p)
    assert msg == (
        f"{p}:3: field 'timestamp:float': expected 4 tab-separated columns "
        "(user_id:token, item_id:token, rating:float, timestamp:float), found 3, got '1\\t3\\t4'"
    )


def test_atomic_row_with_extra_column(tmp_path):
    p = _write(tmp_path, "x.inter", ATOMIC_HEADER + "1\t2\t3\t100\tx\n")
    assert _err(p).startswith(f"{p}:2: field 'column 5 (extra)': expected 4 tab-separated columns")


@pytest.mark.parametrize("missing", ["user_id", "item_id"])
def test_atomic_missing_header_field(tmp_path, missing):
    header = "\t".join(
        f for f in ("user_id:token", "item_id:token", "timestamp:float") if not f.startswith(missing)
    )
    p = _write(tmp_path, "x.inter", header + "\n1\t2\n")
    msg = _err(p)
    assert msg.startswith(f"{p}: field '{missing}': expected a header field '{missing}:<type>'")


def test_atomic_untyped_header(tmp_path):
    p = _write(tmp_path, "x.inter", "user_id\titem_id\n1\t2\n")
    assert _err(p).startswith(f"{p}:1: field 'header': expected a typed RecBole header")


def test_atomic_header_only(tmp_path):
    p = _write(tmp_path, "x.inter", ATOMIC_HEADER)
    assert "expected at least one data row after the header" in _err(p)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file(tmp_path, text):
    p = _write(tmp_path, "x.txt", text)
    assert _err(p) == f"{p}: expected at least one non-blank line (the file is empty)"


def test_empty_id_token(tmp_path):
    p = _write(tmp_path, "x.inter", ATOMIC_HEADER + "1\t2\t3\t100\n\t3\t4\t101\n")
    assert _err(p) == f"{p}:3: field 'user_id:token': expected a non-empty id, got ''"


def test_empty_id_with_explicit_separator(tmp_path):
    p = _write(tmp_path, "x.txt", "1,2,3\n2,,4\n")
    assert _err(p, format="sequences", sep=",").startswith(
        f"{p}:2: field 'user/item': expected a non-empty id"
    )


def test_sequence_line_without_items(tmp_path):
    p = _write(tmp_path, "s.txt", "1 2 3\n2\n3 4 5\n")
    msg = _err(p, format="sequences")
    assert (
        msg == f"{p}:2: field 'items': expected '<user> <item> [<item> ...]' (a user with no items), got '2'"
    )


def test_one_token_per_line_file(tmp_path):
    p = _write(tmp_path, "ids.txt", "1\n2\n3\n")
    msg = _err(p)
    assert msg.startswith(f"{p}: field 'items': expected '<user> <item> [<item> ...]'")
    assert "looks like one token per line" in msg


def test_pairs_wrong_column_count(tmp_path):
    p = _write(tmp_path, "p.txt", "1 5\n1 6\n2 7 8 9\n")
    msg = _err(p, format="pairs")
    assert msg.startswith(
        f"{p}:3: field 'column 3 (extra)': expected 2 whitespace-separated columns (user, item)"
    )


def test_pairs_non_numeric_timestamp(tmp_path):
    p = _write(tmp_path, "p.csv", "1,5,100\n1,6,yesterday\n")
    assert _err(p) == f"{p}:2: field 'timestamp': expected a number, got 'yesterday'"


def test_pairs_too_many_columns_on_first_line(tmp_path):
    p = _write(tmp_path, "p.csv", "1,5,100,4,x\n")
    assert _err(p).startswith(f"{p}:1: field 'columns': expected '<user> <item> [<timestamp>]'")


def test_bad_utf8_names_line(tmp_path):
    p = _write(tmp_path, "s.txt", b"1 2 3\n2 \xff 4\n")
    assert _err(p) == f"{p}:2: expected UTF-8 text (invalid byte 0xff)"


def test_item_table_extra_column(tmp_path):
    p = _write(tmp_path, "x.item", "item_id:token\ttitle:token_seq\n1\tA\n2\tB\tC\n")
    with pytest.raises(DataFormatError, match=rf"^{p}:3: field 'column 3 \(extra\)': expected at most 2"):
        read_item_table(p)


def test_item_table_pads_missing_trailing_fields(tmp_path):
    p = _write(tmp_path, "x.tsv", "item_id\tasin\ttitle\n1\tA1\n")
    assert read_item_table(p).columns["title"] == {"1": ""}


def test_bad_attributes_json(tmp_path):
    p = _write(tmp_path, "a.json", "[1, 2]")
    with pytest.raises(DataFormatError, match=r"expected a JSON object"):
        read_item_attributes_json(p)
    p = _write(tmp_path, "b.json", '{"1": [1,\n 2,, 3]}')
    with pytest.raises(DataFormatError, match=rf"^{p}:2: expected valid JSON"):
        read_item_attributes_json(p)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="interaction file not found"):
        read_interactions(tmp_path / "nope.txt")


def test_error_is_picklable_and_a_value_error(tmp_path):
    e = DataFormatError(tmp_path / "f.inter", 17, "timestamp:float", "a number", got="abc")
    assert isinstance(e, ValueError)
    assert str(e) == f"{tmp_path / 'f.inter'}:17: field 'timestamp:float': expected a number, got 'abc'"
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) and e2.line == 17
