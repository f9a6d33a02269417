"""Resident identity card numbers (居民身份证号码, GB 11643-1999).

An 18-character number: 6 region digits (the first two a province-level code), the birth date
as YYYYMMDD, a 3-digit sequence (odd for men, even for women) and a check digit (ISO 7064
MOD 11-2, where 10 is written ``X``). :func:`parse` checks all of it and raises
:class:`ResidentIdError` with a Chinese message a person can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

# Province-level codes of GB/T 2260: 11–15 north, 21–23 north-east, 31–37 east, 41–46 south-central,
# 50–54 south-west, 61–65 north-west, 71 Taiwan, 81 Hong Kong, 82 Macao.
PROVINCE_CODES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82}
)
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
EARLIEST_BIRTH_YEAR = 1900

_FORMAT = re.compile(r"^\d{17}[\dX]$")


class ResidentIdError(ValueError):
    """The number is not a valid resident ID; ``code`` says why, ``message`` says it in Chinese."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ResidentId:
    number: str  # normalised: upper-case X
    region: str
    birth_date: date
    is_male: bool

    def age_on(self, today: date) -> int:
        return age_on(self.birth_date, today)


def normalise(number: str) -> str:
    """Strip spaces and upper-case a trailing ``x``."""
    return "".join(number.split()).upper()


def check_char(first17: str) -> str:
    """The check character for the first 17 digits."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def age_on(birth_date: date, today: date) -> int:
    """Full years lived on ``today`` (a 29 February birthday comes on 1 March in other years)."""
    years = today.year - birth_date.year
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def parse(number: str, *, today: date | None = None) -> ResidentId:
    """Validate an 18-character resident ID number; raise :class:`ResidentIdError` if it is not one."""
    today = today or date.today()
    value = normalise(number)
    if len(value) != 18:
        raise ResidentIdError("id_number_length", "身份证号码应为 18 位")
    if not _FORMAT.match(value):
        raise ResidentIdError("id_number_format", "身份证号码应为 17 位数字加 1 位数字或 X")
    if int(value[:2]) not in PROVINCE_CODES:
        raise ResidentIdError("id_number_region", "身份证号码的地区码无效，请核对前 6 位")
    try:
        birth = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise ResidentIdError(
            "id_number_birth_date", "身份证号码中的出生日期不存在，请核对第 7–14 位"
        ) from None
    if birth.year < EARLIEST_BIRTH_YEAR or birth > today:
        raise ResidentIdError("id_number_birth_date", "身份证号码中的出生日期不合理，请核对第 7–14 位")
    if check_char(value[:17]) != value[17]:
        raise ResidentIdError("id_number_check_digit", "身份证号码校验位不正确，请核对是否输错")
    return ResidentId(number=value, region=value[:6], birth_date=birth, is_male=int(value[16]) % 2 == 1)
