"""Fact recall: does an answer state the checkable facts of its reference?

A support answer is right when it gives the customer the right number, time, price, e-mail
address, phone number, web address or name; wording around them may differ. ROUGE-L rewards
the wording and forgives a wrong price, so the evaluation also reports the share of the
reference's facts that the answer states. Pure Python, defined here once.
"""

from __future__ import annotations

import re

__all__ = ["answered", "checkable_facts", "fact_recall"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s,;]+", re.IGNORECASE)
# A phone number: digits in groups (with spaces, dots, dashes or brackets), 7 digits or more.
_PHONE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")
# A number with what makes it a fact: a currency sign before, a decimal or time part inside.
_NUMBER = re.compile(r"(?<![\w.,:])[$£€]?\d+(?:[.,:]\d+)*(?![\w])")
# A code that mixes letters and digits: a password, a postcode part, a room number (WX4, gearchain42).
_CODE = re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])\w[\w-]*\b")
_CLOCK_UNIT = re.compile(r"(\d)\s*(?:a\.m\.|p\.m\.|am|pm)\b", re.IGNORECASE)
# A name: a capitalised word that is not the first of its sentence, or a word with capitals
# inside it (HarborGuest, iPhone); joined with the capitalised words that follow it.
_NAME_RUN = re.compile(r"[A-Za-z][\w'-]*(?: [A-Z][\w'-]*)*")
_SENTENCE_END = re.compile(r"(?:^|[.!?:]\s*|\n)\s*$")
# Capitalised words that start many answers without naming anything.
_COMMON = frozenset(
    "i i'm i've i'll a an the yes no we our you your it its this that these those there here please "
    "wi-fi wifi ok".split()
)
# Days and months are facts wherever they stand ("closed every Monday"), in any case.
_CALENDAR = re.compile(
    r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|february|march|april|may|june|july|"
    r"august|september|october|november|december)s?\b", re.IGNORECASE)


def checkable_facts(reference: str) -> list[str]:
    """The reference's facts in a normal form (lower case, digits without separators), in order.

    E-mail addresses, web addresses, phone numbers (digits only), codes that mix letters and
    digits, numbers (times keep their ``:``; ``9:00`` and ``9`` count alike, ``£12.50`` is
    ``12.50``), days and months, and names.
    """
    facts: list[str] = []
    rest = _CLOCK_UNIT.sub(r"\1", reference)
    for pattern, normal in ((_EMAIL, str.casefold), (_URL, _normal_url)):
        for match in pattern.findall(rest):
            facts.append(normal(match))
        rest = pattern.sub(" ", rest)
    for match in _PHONE.findall(rest):
        digits = re.sub(r"\D", "", match)
        if len(digits) >= 7:
            facts.append(digits)
            rest = rest.replace(match, " ")
    facts.extend(code.casefold() for code in _CODE.findall(rest))
    rest = _CODE.sub(" ", rest)
    facts.extend(_normal_number(m) for m in _NUMBER.findall(rest))
    facts.extend(day.casefold() for day in _CALENDAR.findall(rest))
    facts.extend(_names(_CALENDAR.sub(" ", rest)))
    return list(dict.fromkeys(facts))


def fact_recall(answer: str, reference: str) -> float | None:
    """The share of ``reference``'s checkable facts that ``answer`` states; None when it has none."""
    facts = checkable_facts(reference)
    if not facts:
        return None
    stated = set(checkable_facts(answer)) | _all_digit_runs(answer) | {answer.casefold()}
    text = answer.casefold()
    found = sum(1 for fact in facts if fact in stated or (not fact.isdigit() and fact in text))
    return round(found / len(facts), 4)


def answered(answer: str, reference: str, rouge_l: float, threshold: float) -> bool:
    """The question was answered with the right facts: every checkable fact stated, or (for a
    reference without any) the wording close enough (ROUGE-L at least ``threshold``)."""
    recall = fact_recall(answer, reference)
    return rouge_l >= threshold if recall is None else recall >= 1.0


def _normal_url(url: str) -> str:
    return re.sub(r"^(https?://)?(www\.)?", "", url.casefold()).rstrip("/.")


def _normal_number(text: str) -> str:
    number = text.lstrip("$£€").replace(",", "") if re.fullmatch(r"[$£€]?\d{1,3}(,\d{3})+", text) else text.lstrip("$£€")
    if number.endswith(":00"):  # 9:00 and 9 are the same hour
        number = number[:-3]
    return number.rstrip(".")


def _all_digit_runs(text: str) -> set[str]:
    """Every phone-like digit string of ``text`` (a number written with other separators)."""
    return {re.sub(r"\D", "", m) for m in _PHONE.findall(text)}


def _names(text: str) -> list[str]:
    """Runs of capitalised words (``Kestrel Hollow``) and words with inner capitals (``HollowSpokes``).

    A run that opens a sentence loses its common opening words ("The", "Yes"); one word left
    there is an ordinary sentence start, not a name.
    """
    names: list[str] = []
    for match in _NAME_RUN.finditer(text):
        words = match.group().split(" ")
        if not words[0][0].isupper():
            words = words[1:]
        if _SENTENCE_END.search(text[: match.start()]) and words and match.group().startswith(words[0]):
            while words and words[0].casefold() in _COMMON:
                words = words[1:]
            if len(words) == 1 and not _inner_capital(words[0]):
                words = []
        words = [w for w in words if w.casefold() not in _COMMON] if len(words) == 1 else words
        if words:
            names.append(" ".join(words).casefold())
    return names


def _inner_capital(word: str) -> bool:
    return any(c.isupper() for c in word[1:]) and not word.isupper()
