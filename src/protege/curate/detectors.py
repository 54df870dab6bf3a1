"""PII and secret detectors: each finds typed spans in a piece of text.

A detector is one abstract method, `find(text) -> list[Span]`, registered by name in `DETECTORS`
the same way a plugin would. The built-ins are precise regular expressions with checksums where
the format has one (Luhn for payment cards, ISO 7064 mod 97 for IBANs), plus a person-name
detector backed by spaCy's NER (see `protege.curate.names`), loaded lazily.
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

PII_TYPES = ("PRIVATE_KEY", "URL", "SECRET", "EMAIL", "IBAN", "CARD", "SSN", "IP", "PHONE", "PERSON")
"""Every type a built-in detector emits, in priority order: on overlap the earlier type wins."""

PRIORITY = {t: i for i, t in enumerate(PII_TYPES)}


@dataclass(frozen=True)
class Span:
    """A detected value: text[start:end] is PII of `type`."""

    start: int
    end: int
    type: str

    def text(self, source: str) -> str:
        return source[self.start : self.end]


class Detector(ABC):
    """Finds PII of one or more types in text."""

    name: str = ""

    @abstractmethod
    def find(self, text: str) -> list[Span]:
        """Every span of PII in `text` (overlaps allowed; the scrubber resolves them)."""


DETECTORS: dict[str, Callable[[], Detector]] = {}
"""Detector factories by name; `register_detector` adds one (built-ins register the same way)."""

DEFAULT_DETECTORS = ("secrets", "urls", "emails", "cards", "ibans", "ssns", "ips", "phones", "names")


def register_detector(name: str, factory: Callable[[], Detector]) -> None:
    DETECTORS[name] = factory


def make_detectors(names: tuple[str, ...] | list[str] = DEFAULT_DETECTORS) -> list[Detector]:
    out = []
    for name in names:
        if name not in DETECTORS:
            raise ValueError(f"Unknown PII detector {name!r}; known: {', '.join(sorted(DETECTORS))}.")
        out.append(DETECTORS[name]())
    return out


# --- checksums ------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}


def iban_ok(compact: str) -> bool:
    country = compact[:2]
    if IBAN_LENGTHS.get(country, len(compact)) != len(compact) or not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


# --- regex detectors ------------------------------------------------------------------------


class RegexDetector(Detector):
    """Spans of one type from a regex; an optional `validate(match_text)` rejects false hits.

    When the pattern has a group named `v`, only that group is the PII (the rest is context).
    """

    def __init__(self, name: str, type_: str, pattern: str, flags: int = 0, validate: Callable[[str], bool] | None = None):
        self.name, self.type = name, type_
        self.pattern = re.compile(pattern, flags)
        self.validate = validate

    def find(self, text: str) -> list[Span]:
        out = []
        for m in self.pattern.finditer(text):
            start, end = m.span("v") if "v" in self.pattern.groupindex and m.group("v") is not None else m.span()
            if self.validate is None or self.validate(text[start:end]):
                out.append(Span(start, end, self.type))
        return out


class MultiDetector(Detector):
    def __init__(self, name: str, parts: list[Detector]):
        self.name, self.parts = name, parts

    def find(self, text: str) -> list[Span]:
        return [s for p in self.parts for s in p.find(text)]


EMAIL_RE = r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"


def _card_ok(s: str) -> bool:
    digits = re.sub(r"\D", "", s)
    if len(digits) == 12:  # Maestro issues 12-digit cards (prefixes 50, 56-69)
        return digits[:2] in MAESTRO_PREFIXES and luhn_ok(digits)
    return 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1


MAESTRO_PREFIXES = {"50"} | {str(i) for i in range(56, 70)}




def _iban_ok(s: str) -> bool:
    return iban_ok(s.replace(" ", "").upper())



SSN_RE = (
    r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"
    r"|(?i:\b(?:ssn|social security(?: number| no\.?)?)\b[^\d\n]{0,20})(?P<v>(?!000|666|9\d\d)\d{3}[ .]?(?!00)\d{2}[ .]?(?!0000)\d{4})(?!\d)"
)

IPV4_RE = r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.]|\.\d)"
IPV6_CANDIDATE_RE = r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])"


def _ipv6_ok(s: str) -> bool:
    if s.count(":") < 2 or not any(c.isalnum() for c in s):
        return False
    try:
        ipaddress.IPv6Address(s.split("%")[0])
        return True
    except ValueError:
        return False


_PHONE_CORE = r"(?:\+|00)?\d[\d\s().-]{3,22}\d(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?"
PHONE_RE = r"(?<![\w+.-])(?:\(\+?\d{1,5}\)[\s-]?)?" + _PHONE_CORE + r"(?![\w-])"
# a number right after a phone cue ("Phone: 3760702148", "call me back at ...")
PHONE_CUE_RE = (
    r"(?i:\b(?:phone|tel|telephone|mobile|cell|fax|whatsapp|sms|call(?:ed)?(?: me)?(?: back)?(?: at| on)?|caller|reach(?: \w+)? (?:at|on)"
    r"|contact(?: me| us| them)?(?: at| on)?"
    r"|(?:my|your|his|her|their) (?:phone |mobile |cell )?number(?: is)?)\b[\s\"':=(]{0,4})"
    r"(?P<v>\+?\d[\d\s().-]{5,20}\d)(?![\w-])"
)
# ... or right before one ("0612345678 is the number on the account")
PHONE_TRAILING_CUE_RE = (
    r"(?<![\w+.-])(?P<v>\+?\d[\d\s().-]{5,20}\d)"
    r"(?i:\s+is\s+(?:my|the|our|your|his|her|their)\s+(?:phone\s+|mobile\s+|cell\s+|contact\s+)?number\b)"
)
_DATE_RE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")


def _phone_ok(s: str) -> bool:
    core = re.split(r"\s?(?:x|ext\.?|extension)\s?\d", s)[0].strip()
    if _DATE_RE.match(core) or core.count("(") != core.count(")"):
        return False
    digits = re.sub(r"\D", "", core)
    international = core.startswith(("+", "00", "(+"))
    if international:
        return 8 <= len(digits) <= 15
    if not 9 <= len(digits) <= 12 and not (len(digits) == 8 and core.startswith("0")):
        return False
    # a bare run of digits is more often an id than a phone number: only a national trunk
    # prefix (0..., Russia's 8...) or a known mobile shape passes without a cue
    if core.isdigit():
        return bool(_BARE_PHONE.fullmatch(core))
    return True


_BARE_PHONE = re.compile(
    r"0\d{8,10}"  # national trunk prefix 0 (most of Europe, TR 05.., JP 0[789]0.., KR 010..)
    r"|1?[2-9]\d\d[2-9]\d{6}"  # North America
    r"|1[3-9]\d{9}"  # China mobile
    r"|[1-9][1-9]9\d{8}"  # Brazil mobile: area code + 9 + 8 digits
    r"|8\d{10}|79\d{9}"  # Russia: trunk 8, or country code 7 without its +
    r"|3\d{9}"  # Italy mobile
)


SECRET_PATTERNS = [
    r"\bsk-(?:proj-|ant-(?:api\d\d-)?|svcacct-)?[A-Za-z0-9_-]{20,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
    r"\bgithub_pat_[A-Za-z0-9_]{22,}\b",
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    r"\bAIza[0-9A-Za-z_-]{35}(?![\w-])",
    r"\b(?:sk|pk|rk)_(?:live|test)_[0-9A-Za-z]{16,}\b",
    r"\bhf_[A-Za-z0-9]{30,}\b",
    r"\bglpat-[A-Za-z0-9_-]{20,}\b",
    r"\bnpm_[A-Za-z0-9]{36}\b",
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    r"(?i:\bbearer\s+)(?P<v>[A-Za-z0-9._~+/-]{16,}=*)",
    # key = value assignments, in code, env files, JSON and prose ("password: hunter2")
    r"(?i:\b(?:password|passwd|pwd|passphrase|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?token|auth[_-]?token"
    r"|refresh[_-]?token|secret[_-]?key|access[_-]?key(?:[_-]?id)?|private[_-]?key|token)\b[\"']?\s*(?:[:=]|\bis\b)\s*[\"']?)"
    r"(?P<v>(?=[^\s\"',;]*[\d_\-!@#$%^&*])[^\s\"',;<>]{6,})",
]
PRIVATE_KEY_RE = r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----"

_URL_SECRET_PARAM = re.compile(
    r"[?&#](?:access_token|token|auth|key|api_key|apikey|sig|signature|x-amz-signature|x-amz-credential|secret|password|"
    r"session|sessionid|code|client_secret|id_token|refresh_token|jwt)=[^&#\s]{6,}",
    re.IGNORECASE,
)
URL_RE = r"\b(?:https?|ftp|wss?)://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]}]"


def _url_has_secret(s: str) -> bool:
    return bool(_URL_SECRET_PARAM.search(s)) or bool(re.match(r"[a-z]+://[^/@\s]+:[^/@\s]+@", s, re.IGNORECASE))


def _builtin(name: str, type_: str, pattern: str, flags: int = 0, validate=None) -> Callable[[], Detector]:
    return lambda: RegexDetector(name, type_, pattern, flags, validate)


register_detector("emails", _builtin("emails", "EMAIL", EMAIL_RE))
class CardDetector(Detector):
    """Payment card numbers: 13-19 digits, optionally grouped by spaces or dashes, Luhn-valid.

    A candidate run is tried from its longest group-aligned prefix down, so a card followed by
    more digits (an expiry, a CVV) is still found.
    """

    name = "cards"
    candidate = re.compile(r"(?<![\w.+-])\d(?:[ -]?\d){11,24}(?!\w)")

    def find(self, text: str) -> list[Span]:
        out = []
        for m in self.candidate.finditer(text):
            s = m.group(0)
            ends = [i + 1 for i, c in enumerate(s) if c.isdigit() and (i + 1 == len(s) or not s[i + 1].isdigit())]
            for end in reversed(ends):
                if _card_ok(s[:end]):
                    out.append(Span(m.start(), m.start() + end, "CARD"))
                    break
        return out


register_detector("cards", CardDetector)
class IbanDetector(Detector):
    """IBANs, compact or in groups of four, in either case, mod-97 valid; a trailing group that breaks the checksum
    (a word after the number) is dropped and the rest tried again."""

    name = "ibans"
    candidate = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)"
                           r"(?![A-Za-z0-9])")

    def find(self, text: str) -> list[Span]:
        out = []
        for m in self.candidate.finditer(text):
            value = m.group(0)
            while len(value.replace(" ", "")) >= 15:
                if _iban_ok(value):
                    out.append(Span(m.start(), m.start() + len(value), "IBAN"))
                    break
                if " " not in value:
                    break
                value = value.rsplit(" ", 1)[0]
        return out


register_detector("ibans", IbanDetector)
register_detector("ssns", _builtin("ssns", "SSN", SSN_RE))
register_detector(
    "ips",
    lambda: MultiDetector(
        "ips", [RegexDetector("ipv4", "IP", IPV4_RE), RegexDetector("ipv6", "IP", IPV6_CANDIDATE_RE, validate=_ipv6_ok)]
    ),
)
def _cued_phone_ok(s: str) -> bool:
    return not _DATE_RE.match(s) and 7 <= len(re.sub(r"\D", "", s)) <= 15


register_detector(
    "phones",
    lambda: MultiDetector(
        "phones",
        [
            RegexDetector("phone", "PHONE", PHONE_RE, re.IGNORECASE, validate=_phone_ok),
            RegexDetector("phone_cue", "PHONE", PHONE_CUE_RE, validate=_cued_phone_ok),
            RegexDetector("phone_trailing_cue", "PHONE", PHONE_TRAILING_CUE_RE, validate=_cued_phone_ok),
        ],
    ),
)
register_detector("urls", _builtin("urls", "URL", URL_RE, validate=_url_has_secret))
register_detector(
    "secrets",
    lambda: MultiDetector(
        "secrets",
        [RegexDetector("private_key", "PRIVATE_KEY", PRIVATE_KEY_RE)]
        + [RegexDetector(f"secret{i}", "SECRET", p) for i, p in enumerate(SECRET_PATTERNS)],
    ),
)


def _names_factory() -> Detector:
    from protege.curate.names import PersonNameDetector

    return PersonNameDetector()


register_detector("names", _names_factory)
