"""`curate predict --input`: the challenge's test CSV read strictly, each problem named by
its line (a prediction per item id, never two, never one silently shifted)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from curation.errors import UserError
from training.data import read_challenge_csv

HEADER = "parent_asin,main_category,title,features,description,image_paths\n"


@pytest.mark.parametrize("body,message", [
    ("", "{path}: empty (expected a header: parent_asin, main_category"),
    (HEADER + 'A,Beauty,"unterminated,f,d,a.jpg\n', "{path}:2: not valid CSV"),
    (HEADER + "A,Beauty,t,f,d,a.jpg,extra\n", "{path}:2: 7 fields where the header has 6"),
    (HEADER + "A,Beauty,t,f,d,a.jpg\n,Beauty,t,f,d,b.jpg\n", "{path}:3: empty parent_asin"),
    (HEADER + "A,Beauty,t,f,d,a.jpg\nB,B,t,f,d,b.jpg\nA,Beauty,u,f,d,c.jpg\n",
     "{path}:4: parent_asin A again (first on line 2): one row per item"),
    ("parent_asin,title\nA,t\n", "{path}: missing column(s) main_category"),
])
def test_a_bad_prediction_input_names_its_line(tmp_path, body, message):
    path = tmp_path / "input.csv"
    path.write_text(body)
    with pytest.raises(UserError, match="^" + re.escape(
            message.format(path=path))):
        read_challenge_csv(path, None)


def test_a_good_prediction_input_with_a_quoted_newline_and_a_bom(tmp_path):
    path = tmp_path / "input.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + 'A,Beauty,"two\nlines",f,d,a.jpg\n'
                                        'B,Beauty,t,,,\n').encode())
    items = read_challenge_csv(path, Path("/images"))
    assert items["parent_asin"].to_list() == ["A", "B"]
    assert "Title: two lines" in items["model_text"][0]  # the quoted newline, inside its cell
    assert items["image_path"][1] is None  # no image paths given
