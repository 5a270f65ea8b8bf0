"""The fixed character vocabulary the chars data and the language model share."""

from __future__ import annotations

from lightsuite.vocabulary import CHARS, UNKNOWN, VOCAB_SIZE, decode, encode


def test_vocabulary_round_trip_and_unknown_characters():
    text = "def f(x):\n\treturn x + 1  # ~"
    assert decode(encode(text)) == text
    ids = encode("é→a")
    assert ids.tolist() == [UNKNOWN, UNKNOWN, CHARS.index("a")]
    assert VOCAB_SIZE == len(CHARS) + 1 == 98
