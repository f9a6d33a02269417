"""GB 11643 resident ID numbers: region, birth date, check digit."""

from __future__ import annotations

from datetime import date

import pytest

from yijing import resident_id


def test_the_standard_example_is_valid():
    # The example printed in GB 11643-1999 itself.
    parsed = resident_id.parse("11010519491231002X", today=date(2026, 1, 1))
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.region == "110105"
    assert parsed.is_male is False
    assert parsed.age_on(date(2026, 1, 1)) == 76


def test_lower_case_x_and_spaces_are_normalised():
    assert resident_id.parse(" 11010519491231002x ", today=date(2026, 1, 1)).number == "11010519491231002X"


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("1101051949123100", "id_number_length"),
        ("11010519491231002Y", "id_number_format"),
        ("99010519491231002X", "id_number_region"),  # no province 99
        ("10010519491231002X", "id_number_region"),
        ("110105194902300025", "id_number_birth_date"),  # 30 February
        ("110105189912310025", "id_number_birth_date"),  # before 1900
        ("110105203001010025", "id_number_birth_date"),  # in the future
        ("110105194912310021", "id_number_check_digit"),
    ],
)
def test_invalid_numbers_say_why(number, code):
    with pytest.raises(resident_id.ResidentIdError) as info:
        resident_id.parse(number, today=date(2026, 1, 1))
    assert info.value.code == code
    assert "身份证" in info.value.message


def test_every_province_code_of_the_brief_is_accepted(id_number):
    for province in [11, 15, 21, 23, 31, 37, 41, 46, 50, 54, 61, 65, 71, 81, 82]:
        number = id_number("19900101", region=f"{province}0102")
        assert resident_id.parse(number, today=date(2026, 1, 1)).region.startswith(str(province))


def test_age_counts_full_years():
    assert resident_id.age_on(date(2008, 3, 2), date(2026, 3, 1)) == 17
    assert resident_id.age_on(date(2008, 3, 1), date(2026, 3, 1)) == 18
    assert resident_id.age_on(date(2008, 2, 29), date(2026, 2, 28)) == 17
