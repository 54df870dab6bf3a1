"""Script-aware person-name rules over the multilingual gazetteer (`curate/gazetteer.py`).

- Cased scripts (Latin, Cyrillic, Greek): a run of capitalised words is a name from its first
  word that is a known first name ("Contact Juliusz Piaścik" -> "Juliusz Piaścik"), or from a
  known last name followed by a known first name ("Сазонов Арсений Дмитриевич", "Nguyễn Văn An"),
  when at least two words follow that start; particles (da, van, bin...) may sit inside. Runs that
  are place names ("Porto Alegre") or end on a place/organisation word ("... Street") are not names.
- Honorifics in many languages (Pan, Frau, Sayın, Sra., господин, Ông, श्री...) mark the next one to
  three capitalised words as a name, and postfix ones (Bey, Hanım) the words before.
- Chinese: a common surname (`ZH_SURNAMES`) plus a one- or two-character given name, when the Han
  run is exactly that long inside other text, or follows a cue (客户, 联系人, 收件人...), or precedes a
  title (先生, 女士...). Two-character given names are taken when the gazetteer knows them.
- Japanese: a known surname written in kanji, then (after an optional space) a given name, or an
  honorific (様, さん, 氏).
- Korean: a 3-4 syllable word whose first syllable is a common surname and whose rest is a known
  given name, or any such word before 님/씨, or standing alone inside non-Korean text.
- Devanagari and Arabic (no letter case): a known first name and the word after it, a word before
  a known last name, or a run of one to three words inside otherwise Latin text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache

from protege.curate.gazetteer import Gazetteer

# The most common Chinese surnames (mainland census rankings, about the top 200, leaving out those that are
# everyday words: 成, 安, 全, 华...), single and compound: written by hand.
ZH_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任卢姚沈钟姜"
    "崔谭陆范汪廖石金韦贾夏付傅方邹熊白孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常汤康易乔赖文施"
    "洪辛柯庄葛牛左温殷颜倪苗翟鲁萧毕尤项游边聂俞祝章鲍涂季甘骆岳焦桂童冉阎梅樊凌霍蒙柴舒卜屈褚纪詹苑靳窦宫邢滕饶阮穆兰晏"
    "谷费裴缪姬卫戚符蓝娄郁甄伍申闵"
    "張劉陳楊黃趙吳許馮鄧葉蘇盧鍾譚陸廖韋賈鄒熊龔嚴湯賴顏魯歐陽諸"
)
ZH_COMPOUND = frozenset({"欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "慕容", "夏侯", "令狐", "尉迟", "公孙", "轩辕", "长孙",
                         "宇文", "司徒", "歐陽", "司馬", "諸葛", "東方"})
ZH_CUES = ("为", "给", "客户", "顾客", "联系人", "收件人", "收货人", "寄件人", "姓名", "名字", "我是", "我叫", "用户", "乘客", "患者", "员工",
           "负责人", "联系", "转告", "通知", "尊敬的", "亲爱的", "致", "客戶", "聯絡人", "聯繫", "使用者")
ZH_TITLES = ("先生", "女士", "小姐", "老师", "經理", "经理", "医生", "醫生", "教授", "同学", "总", "主任", "律师")
# The most common Korean surnames (one syllable): written by hand.
KO_SURNAMES = frozenset("김이박최정강조윤장임한오서신권황안송류유전홍고문양손배백허남심노하곽성차주우구민진지엄채원천방공현함변염여추도"
                        "소석선설마길연위표명기반왕금옥육인맹제모탁국어은편용예경봉사부가복태목형계피두감음빈동온호범좌팽승간상시갈단견당화창옹순")
KO_SUFFIXES = ("고객님께서", "고객님께", "고객님의", "고객님이", "고객님은", "고객님을", "고객님", "님께서", "님께", "님의", "님이",
               "님은", "님을", "님", "씨가", "씨는", "씨의", "씨를", "씨", "에게", "께서", "께", "의", "이", "가", "은", "는", "을", "를",
               "과", "와", "도", "")
KO_PLACE_END = frozenset("시구군동읍면도리로길역")
"""Last syllables of Korean place names (성남시 city, 강남구 district, 역 station...)."""
JA_HONORIFICS = ("様", "さま", "さん", "氏", "殿", "先生", "くん", "ちゃん")
PARTICLES = frozenset(["van", "von", "der", "den", "de", "da", "das", "dos", "do", "del", "della", "di", "du", "la", "le", "bin", "ibn", "al", "el", "ter", "ten", "y", "e", "zu"])
PREFIX_TITLES = frozenset(
    ["mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam", "herr", "frau", "fru", "fröken", "pan", "pani", "panna", "sayın", "bay", "bayan", "sr", "sra", "srta", "señor", "señora", "don", "doña", "senhor", "senhora", "dona", "sig", "signor", "signora", "dott", "dottor", "dottoressa", "m", "mme", "mlle", "monsieur", "madame", "ông", "bà", "anh", "chị", "cô", "господин", "госпожа", "г-н", "г-жа", "пан", "пані"]
)
# words that open place names ("Port Julian", "Santa Maria", "Nowa Wieś"): a run starting with one is no name
PLACE_HEADS = frozenset(["port", "fort", "mount", "lake", "north", "south", "east", "west", "new", "san", "santa", "santo",
                         "são", "saint", "st", "ste", "sankt", "puerto", "porto", "bad", "nova", "novo", "nowy", "nowa",
                         "villa", "vila", "ciudad", "monte", "rio", "costa", "isla", "ilha", "la", "le", "los", "las", "el"])
POSTFIX_TITLES = frozenset(["bey", "hanım", "hanim", "efendi", "san", "sama"])
IN_PREFIXES = ("ग्राहक", "प्रिय", "कृपया", "श्री", "श्रीमती", "सुश्री", "कुमारी", "डॉ.", "डॉ", "السيد", "السيدة", "الأستاذ", "الأستاذة", "الدكتور")

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*\.?")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff々]+")
_HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]+")
_UNCASED_WORD = re.compile(r"[\u0900-\u0963\u0966-\u097f\u0600-\u06ff\u0750-\u077f]+")
_LATIN_AROUND = re.compile(r"[A-Za-z]")


def cased_runs(text: str) -> Iterator[list[tuple[int, int, str]]]:
    """Runs of capitalised words (start, end, word) joined by single spaces, particles allowed inside."""
    run: list[tuple[int, int, str]] = []
    pending: list[tuple[int, int, str]] = []
    last_end = -1
    for m in _WORD.finditer(text):
        word = m.group(0).rstrip(".")
        gap_ok = last_end >= 0 and text[last_end : m.start()] in (" ", "\u00a0")  # "Anna. Bob" is two runs
        last_end = m.start() + len(word)
        if word[:1].isupper() and not (word.isupper() and len(word) > 1):
            if run and gap_ok:
                run.extend(pending)
            elif run:
                yield run
                run = []
            pending = []
            run.append((m.start(), m.start() + len(word), word))
        elif run and gap_ok and word in PARTICLES and not pending:
            pending = [(m.start(), m.start() + len(word), word)]
        else:
            if run:
                yield run
            run, pending = [], []
    if run:
        yield run


# Family-name and patronymic endings that mark a capitalised word as a surname (Turkish, Slavic,
# Baltic, Nordic, Greek, Armenian, Georgian; Cyrillic forms too).
_SURNAME_END = re.compile(
    r"(?:oğlu|oglu|ski|ska|cki|cka|dzki|dzka|wicz|czyk|czak|ović|ević|vić|enko|chuk|shvili|dze|yan|ian|opoulos|akis|sson|"
    r"ová|ská|ský|ienė|aitė|ов|ова|ев|ева|ёв|ёва|ин|ина|ский|ская|цкий|цкая|енко|ук|юк|ян|ович|евич|овна|евна|ична)$"
)


def _is_first(word: str, gaz: Gazetteer) -> bool:
    return gaz.is_first(word) or ("-" in word and gaz.is_first(word.split("-")[0]))


# a company's legal form right after a run makes it an organisation ("Sandström Larsson AB")
_LEGAL_FORMS = (
    r"AB|HB|KB|AG|AS|A/S|ASA|San\.|Şti\.|Tic\.|Ltd\.\s?Şti|BV|B\.V\.|GmbH|KG|OHG|SE|Oy|Oyj|NV|N\.V\.|Ltd|Ltda|LLC|LLP|Inc|"
    r"Corp|PLC|plc|S\.?A\.?S?|S\.?L\.?(?:N\.?E\.?)?|S\.?Com\.?|S\.?p\.?A\.?|s\.?r\.?l\.?|S\.?R\.?L\.?|S\.?C\.?|SARL|sp\.|spółka|"
    r"Sp\.\s?k\.|A\.Ş\.|Ltd\.|e Figli|& Co|y Asociados|ve Ortakları|Holding|Group|Gruppe|Grupo|Inc\.|Co\."
)
_ORG_AFTER = re.compile(rf",?\s(?:{_LEGAL_FORMS}|und)(?![\w])")
_LEGAL_AFTER = re.compile(rf"\s(?:{_LEGAL_FORMS})(?![\w])")  # no comma: "Maria Santos, SA office" is a person


def organisation(text: str, start: int, end: int) -> bool:
    """A company's legal form right after the span, or starting at its last word: "Öcalan İnönü San.",
    "Tanguy Camus S.A.S." (a name detector may have taken the form's first letter into the span)."""
    last = text.rfind(" ", start, end)
    return bool(_LEGAL_AFTER.match(text, end) or (last > start and _LEGAL_AFTER.match(text, last)))


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip(" \t")
    return not before or before[-1] in ".!?\n"


def cased_names(text: str, gaz: Gazetteer, stop_tail: frozenset[str], not_names: frozenset[str]) -> Iterator[tuple[int, int]]:
    """Name spans in runs of capitalised words (Latin, Cyrillic, Greek): see the module docstring."""
    for run in cased_runs(text):
        words = [w for w in run if w[2] not in PARTICLES]
        if len(words) < 2:
            continue
        for i, (s, _, w) in enumerate(words[:-1]):
            if w in not_names or w.casefold() in PLACE_HEADS:
                continue
            nxt = words[i + 1][2]
            titled = w.casefold().rstrip(".") in PREFIX_TITLES
            if not (titled or _is_first(w, gaz) or (gaz.is_last(w) and _is_first(nxt, gaz)) or _SURNAME_END.search(w.casefold())
                    or (_SURNAME_END.search(nxt.casefold()) and not _sentence_start(text, s))):
                continue
            body = words[i + 1 : i + 5] if titled else words[i : i + 4]
            for j, (_, _, tail) in enumerate(body):
                if tail in stop_tail:
                    body = body[:j]
                    break
            if len(body) < 2 and not (body and titled):
                break
            start, end = body[0][0], body[-1][1]
            if _ORG_AFTER.match(text, end):
                break
            if not gaz.is_place(text[start:end]) and not gaz.is_place(" ".join(b[2] for b in body[:2])):
                yield start, end
            break
        else:
            last = words[-1][2].casefold()
            if last in POSTFIX_TITLES and len(words) >= 2:
                yield words[0][0], words[-2][1]


# last characters of place and organisation names (区 ward, 市 city, 駅 station, 店 shop...)
CJK_PLACE_END = frozenset("区區市駅站町村県縣都府省县鎮镇路街線线店館馆局港社院部所司厅廳園园寺")
_KANA = re.compile(r"[\u3040-\u30ff]")
# characters that end a name in Chinese agent text (verbs and particles that follow one)
ZH_BREAK = frozenset("的了是在和与及等您你他她我们已将会要需请说确反预收发取退订购买付处办提来去打联问称表示也都就被把给对向于为先女小老经")


def han_names(text: str, gaz: Gazetteer) -> Iterator[tuple[int, int]]:
    """Chinese and Japanese names in runs of Han characters."""
    japanese, latin = bool(_KANA.search(text)), bool(_LATIN_AROUND.search(text))
    for m in _HAN.finditer(text):
        run, base = m.group(0), m.start()
        if japanese or latin:
            span = _japanese(run, text, base, gaz)
            if span:
                yield span
                continue
        if japanese:
            continue
        if 2 <= len(run) <= 4 and _starts_with_surname(run) and run[-1] not in CJK_PLACE_END and not gaz.is_place(run):
            yield m.start(), m.end()
            continue
        for cue in ZH_CUES:
            for c in re.finditer(re.escape(cue), run):
                span = _zh_name_at(run, c.end(), gaz)
                if span:
                    yield base + span[0], base + span[1]
        for title in ZH_TITLES:
            for t in re.finditer(re.escape(title), run):
                for length in (3, 2):
                    s = t.start() - length
                    if s >= 0 and _starts_with_surname(run[s:]) and not gaz.is_place(run[s : t.start()]):
                        yield base + s, base + t.start()
                        break


def _starts_with_surname(run: str) -> bool:
    return run[:1] in ZH_SURNAMES or run[:2] in ZH_COMPOUND


@lru_cache(maxsize=1)
def _zh_name_chars(gaz: Gazetteer) -> frozenset[str]:
    """Characters seen at least 3 times as the second character of a two-character Han given name."""
    counts = Counter(n[1] for n in gaz.first if len(n) == 2 and _HAN.fullmatch(n))
    return frozenset(c for c, k in counts.items() if k >= 3) - ZH_BREAK


def _zh_name_at(run: str, i: int, gaz: Gazetteer) -> tuple[int, int] | None:
    while i < len(run) and run[i] in "：:的是为 ":
        i += 1
    if not _starts_with_surname(run[i:]):
        return None
    j = i + (2 if run[i : i + 2] in ZH_COMPOUND else 1)
    if j >= len(run) or run[j] in ZH_BREAK:
        return None
    two = j + 1 < len(run) and (gaz.is_first(run[j : j + 2]) or run[j + 1] in _zh_name_chars(gaz))
    end = j + (2 if two else 1)
    return (i, end) if not gaz.is_place(run[i:end]) else None


def _japanese(run: str, text: str, base: int, gaz: Gazetteer) -> tuple[int, int] | None:
    """A known kanji surname opening the run, with the given name after it (in the run, or after a space)."""
    core = next((run[: -len(h)] for h in JA_HONORIFICS if run.endswith(h) and len(run) > len(h)), run)
    for length in (3, 2):
        sur = core[:length]
        if len(sur) < length or not gaz.is_last(sur):
            continue
        if len(core) > length:
            ok = len(core) - length <= 3 and core[-1] not in CJK_PLACE_END and not gaz.is_place(core)
            return (base, base + len(core)) if ok else None
        given = _JA_GIVEN.match(text, base + len(run))
        if given:
            return base, given.end()
        return None
    return None


_JA_GIVEN = re.compile(r"[ \u3000][\u4e00-\u9fff々\u3040-\u30ff]{1,4}")


def hangul_names(text: str, gaz: Gazetteer) -> Iterator[tuple[int, int]]:
    for m in _HANGUL_WORD.finditer(text):
        word = m.group(0)
        alone = not _HANGUL_WORD.search(text[max(0, m.start() - 30) : m.start()] + text[m.end() : m.end() + 30])
        for suffix in KO_SUFFIXES:
            core = word[: len(word) - len(suffix)] if suffix else word
            if not word.endswith(suffix) or not 2 <= len(core) <= 4 or core[0] not in KO_SURNAMES:
                continue
            honorific = suffix.startswith(("님", "고객님", "씨"))
            place = core[-1] in KO_PLACE_END
            if len(core) >= 3 and not place and (gaz.is_first(core[1:]) or honorific or alone and not suffix):
                yield m.start(), m.start() + len(core)
                break


HI_FUNCTION = frozenset(["ने", "को", "का", "की", "के", "से", "में", "पर", "है", "हैं", "जी", "और", "या", "भी", "तो", "ही", "था", "थी", "थे", "कि", "लिए", "साथ", "द्वारा", "यह", "वह", "इस", "उस", "एक"])


def uncased_names(text: str, gaz: Gazetteer) -> Iterator[tuple[int, int]]:
    """Devanagari and Arabic script: a known first name and the next word, a word and a known last
    name after it, the words after a title, or a run of two or three words inside Latin text."""
    words = [(m.start(), m.end(), m.group(0)) for m in _UNCASED_WORD.finditer(text)]
    groups: list[list[tuple[int, int, str]]] = []
    for w in words:
        if groups and text[groups[-1][-1][1] : w[0]] == " ":
            groups[-1].append(w)
        else:
            groups.append([w])
    for group in groups:
        before, after = text[max(0, group[0][0] - 40) : group[0][0]], text[group[-1][1] : group[-1][1] + 40]
        if 2 <= len(group) <= 3 and _LATIN_AROUND.search(before) and _LATIN_AROUND.search(after):
            yield group[0][0], group[-1][1]
            continue
        for i, (s, _, w) in enumerate(group[:-1]):
            nxt = group[i + 1]
            if nxt[2] in HI_FUNCTION or w in HI_FUNCTION:
                continue
            if w in IN_PREFIXES:
                third = group[i + 2] if i + 2 < len(group) else None
                yield nxt[0], (third[1] if third and third[2] not in HI_FUNCTION else nxt[1])
            elif gaz.is_first(w) or gaz.is_last(nxt[2]):
                yield s, nxt[1]
