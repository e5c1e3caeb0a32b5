import numpy as np
import pytest

from maskgate.labels import AgeBand, Gender, Mask, age_band, class_name, decode, encode, parse_gender


def test_encode_decode_roundtrip_all_18():
    seen = set()
    for m in Mask:
        for g in Gender:
            for a in AgeBand:
                c = encode(m, g, a)
                assert decode(c) == (m, g, a)
                seen.add(c)
    assert seen == set(range(18))


def test_encode_matches_competition_formula_vectorised():
    m, g, a = np.meshgrid(range(3), range(2), range(3), indexing="ij")
    c = encode(m.ravel(), g.ravel(), a.ravel())
    assert (c == m.ravel() * 6 + g.ravel() * 3 + a.ravel()).all()
    assert all((x == y).all() for x, y in zip(decode(c), (m.ravel(), g.ravel(), a.ravel())))


def test_age_band_boundaries():
    assert [age_band(x) for x in (18, 29, 30, 59, 60, 116)] == [0, 0, 1, 1, 2, 2]


def test_decode_rejects_out_of_range():
    with pytest.raises(ValueError):
        decode(18)
    with pytest.raises(ValueError):
        decode(-1)


def test_parse_gender_and_names():
    assert parse_gender("Female") == Gender.FEMALE and parse_gender(" male ") == Gender.MALE
    with pytest.raises(ValueError, match="unknown gender"):
        parse_gender("other")
    assert class_name(encode(1, 1, 2)) == "incorrect/female/>=60"
