"""Build tests/data/pii_cases.jsonl: a labelled PII test set for the scrubber.

Values come from Faker (several locales, its own formats, not ours), set into agent-style
sentences next to look-alikes that are not PII (order ids, dates, prices, versions, Luhn-invalid
numbers, company and city names). Each line: {"text", "spans": [{"start", "end", "type"}], "kind"}.

    python tests/data/make_pii_cases.py        # rewrites tests/data/pii_cases.jsonl (seeded)
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

from faker import Faker

SEED = 20250601
PER_TYPE = 150
NAMES = 400
OUT = Path(__file__).with_name("pii_cases.jsonl")

rng = random.Random(SEED)
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "en_IN", "pl_PL"]
fakers = {loc: Faker(loc) for loc in LOCALES}
for i, f in enumerate(fakers.values()):
    f.seed_instance(SEED + i)
us = fakers["en_US"]


COMPANIES = ["Acme Corp", "Globex", "Initech", "Northwind Traders", "Contoso Ltd", "Umbrella Logistics", "Stark Industries",
             "Wayne Enterprises", "Hooli", "Vandelay Industries", "Soylent Foods", "Tyrell Systems", "Cyberdyne", "Wonka Ltd"]


def fk(locales=LOCALES) -> Faker:
    return fakers[rng.choice(locales)]


def distractor() -> str:
    return rng.choice(
        [
            f"order ORD-{rng.randint(2020, 2026)}-{rng.randint(100000, 999999)}",
            f"due {rng.randint(2023, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            f"total ${rng.randint(10, 9999):,}.{rng.randint(0, 99):02d}",
            f"version v{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 40)}",
            f"at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
            f"ticket #{rng.randint(10000, 99999)}",
            f"SKU {rng.randint(10**7, 10**8 - 1)}",
            f"ref {''.join(rng.choices('0123456789', k=16))[:15]}0",  # 16 digits, rarely Luhn-valid: filtered below
            f"from {rng.choice(COMPANIES)}",
            f"in {us.city()}",
            f"qty {rng.randint(1, 500)}",
        ]
    )


def luhn_ok(d: str) -> bool:
    total, parity = 0, len(d) % 2
    for i, ch in enumerate(d):
        x = int(ch)
        if i % 2 == parity:
            x = x * 2 - 9 if x * 2 > 9 else x * 2
        total += x
    return total % 10 == 0


def safe_distractor() -> str:
    while True:
        d = distractor()
        if d.startswith("ref ") and luhn_ok(d[4:]):
            continue
        return d


def build(template: str, values: dict[str, tuple[str, str]]) -> dict:
    """Fill {slot} placeholders, recording each value's span."""
    text, spans, pos = "", [], 0
    import re

    for m in re.finditer(r"\{(\w+)\}", template):
        text += template[pos : m.start()].replace("{{", "{").replace("}}", "}")
        key = m.group(1)
        if key == "noise":
            text += safe_distractor()
        else:
            value, type_ = values[key]
            spans.append({"start": len(text), "end": len(text) + len(value), "type": type_})
            text += value
        pos = m.end()
    text += template[pos:].replace("{{", "{").replace("}}", "}")
    return {"text": text, "spans": spans}


def card() -> str:
    kind = rng.choice(["visa", "mastercard", "amex", "discover", "jcb", "diners", "visa16", "visa13", "visa19", "maestro", "jcb15"])
    num = us.credit_card_number(card_type=kind)
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain":
        return num
    sep = " " if style == "space" else "-"
    if len(num) == 15:
        groups = [num[:4], num[4:10], num[10:]]
    elif len(num) == 14:
        groups = [num[:4], num[4:10], num[10:]]
    else:
        groups = [num[i : i + 4] for i in range(0, len(num), 4)]
    return sep.join(groups)


def iban() -> str:
    f = fk(["de_DE", "fr_FR", "en_GB", "nl_NL", "es_ES", "it_IT", "pl_PL", "pt_BR"])
    value = f.iban()
    if rng.random() < 0.5:
        value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def token(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choices(alphabet, k=n))


def secret() -> str:
    return rng.choice(
        [
            lambda: "sk-proj-" + token(48, string.ascii_letters + string.digits + "_-"),
            lambda: "sk-" + token(48),
            lambda: "sk-ant-api03-" + token(80, string.ascii_letters + string.digits + "_-"),
            lambda: "AKIA" + token(16, string.ascii_uppercase + string.digits),
            lambda: "ghp_" + token(36),
            lambda: "github_pat_" + token(22) + "_" + token(59),
            lambda: "xoxb-" + "-".join(token(12, string.digits) for _ in range(2)) + "-" + token(24),
            lambda: "AIza" + token(35, string.ascii_letters + string.digits + "_-"),
            lambda: "sk_live_" + token(24),
            lambda: "hf_" + token(34),
            lambda: "eyJhbGciOiJIUzI1NiJ9.eyJ" + token(40, string.ascii_letters + string.digits + "_-") + "." + token(43, string.ascii_letters + string.digits + "_-"),
        ]
    )()


def url_with_token() -> str:
    host = us.domain_name()
    return rng.choice(
        [
            lambda: f"https://{host}/reset-password?token={us.sha1()[:32]}",
            lambda: f"https://{host}/api/v1/export?api_key={token(32)}&format=csv",
            lambda: f"https://{host}/callback?code={token(24)}&state=xyz",
            lambda: f"https://{us.user_name()}:{token(12)}@{host}/repo.git",
            lambda: f"https://s3.amazonaws.com/{host}/report.pdf?X-Amz-Credential=AKIA{token(16, string.ascii_uppercase)}&X-Amz-Signature={us.sha256()}",
            lambda: f"https://{host}/share#access_token={token(40)}",
        ]
    )()


STRUCTURED = {
    "EMAIL": (lambda: rng.choice([fk().email(), fk().free_email(), fk().company_email(), us.user_name() + "+" + us.word() + "@" + us.free_email_domain()]),
              ["Please reply to {v} before Friday, {noise}.", "Customer email: {v}\nIssue: cannot log in ({noise})",
               "cc {v} on the {noise} thread", "{{\"contact\": \"{v}\", \"note\": \"{noise}\"}}", "Send the invoice ({noise}) to {v}."]),
    "PHONE": (lambda: fk(["en_US", "en_GB", "de_DE", "fr_FR", "en_IN", "es_ES", "it_IT", "nl_NL"]).phone_number(),
              ["Call me back at {v} about {noise}.", "Phone: {v}\nNotes: {noise}", "The caller ({v}) asked about {noise}.",
               "reach the warehouse on {v} ({noise})", "{{\"phone\": \"{v}\", \"ref\": \"{noise}\"}}"]),
    "CARD": (card, ["Charge card {v} for {noise}.", "card number: {v} exp 09/27 ({noise})", "Refund to {v}, {noise}",
                    "{{\"card\": \"{v}\", \"memo\": \"{noise}\"}}", "The customer read out {v} over the phone ({noise})."]),
    "IBAN": (iban, ["Wire the deposit to IBAN {v} ({noise}).", "Bank details: {v}, {noise}", "pay {noise} into {v}",
                    "{{\"iban\": \"{v}\", \"memo\": \"{noise}\"}}", "Account {v} was debited twice ({noise})."]),
    "SSN": (lambda: us.ssn(), ["SSN: {v} ({noise})", "Applicant social security number {v}; {noise}", "verify {v} against the record, {noise}",
                               "{{\"ssn\": \"{v}\", \"case\": \"{noise}\"}}", "Her SSN is {v} and the {noise}."]),
    "IP": (lambda: rng.choice([us.ipv4(), us.ipv4_private(), us.ipv6(), us.ipv4_public()]),
           ["Blocked login from {v} ({noise}).", "client_ip={v} {noise}", "The server at {v} stopped responding {noise}.",
            "{{\"ip\": \"{v}\", \"event\": \"{noise}\"}}", "Whitelist {v} for {noise}"]),
    "URL": (url_with_token, ["Open {v} to continue ({noise}).", "webhook: {v}\n{noise}", "The link {v} expired, {noise}.",
                             "{{\"url\": \"{v}\", \"ref\": \"{noise}\"}}", "Clone from {v} then build {noise}."]),
    "SECRET": (secret, ["Use API key {v} for {noise}.", "OPENAI_API_KEY={v}\n# {noise}", "export TOKEN={v}  # {noise}",
                        "{{\"api_key\": \"{v}\", \"note\": \"{noise}\"}}", "Authorization: Bearer {v} ({noise})",
                        "my key is {v}, please debug {noise}"]),
}

NAME_TEMPLATES = [
    "Please forward the contract to {v} by {noise}.",
    "{v} reported that the {noise} is missing.",
    "Meeting notes: {v} and {w} agreed to ship {noise}.",
    "Dear {v},\nyour {noise} has shipped.",
    "Hi, this is {v} from accounts, calling about {noise}.",
    "Assign the ticket to {v}; {noise}.",
    "Patient: {v}\nComplaint: headache since {noise}",
    "The refund for {v} ({noise}) was approved by {w}.",
    "Summarize the email from {v} about {noise}.",
    "Thanks,\n{v}",
    "{{\"customer_name\": \"{v}\", \"order\": \"{noise}\"}}",
    "Can you ask {v} whether {noise} is still open?",
    "According to {v}, the {noise} was late.",
    "Book a table for {v} {noise}.",
    "Translate: {v} a confirmé la commande {noise}.",
    "{v} wrote: the {noise} does not work.",
]


def main() -> None:
    cases = []
    for type_, (make, templates) in STRUCTURED.items():
        for i in range(PER_TYPE):
            c = build(templates[i % len(templates)], {"v": (make(), type_)})
            c["kind"] = type_
            cases.append(c)
    for i in range(NAMES):
        f1, f2 = fk(), fk()
        # first + last (titles and degrees that Faker's name() adds are not the PII, so left out)
        v = f1.first_name() + " " + f1.last_name() if rng.random() < 0.85 else f1.first_name() + " " + f2.first_name() + " " + f1.last_name()
        c = build(NAME_TEMPLATES[i % len(NAME_TEMPLATES)], {"v": (v, "PERSON"), "w": (f2.first_name() + " " + f2.last_name(), "PERSON")})
        c["kind"] = "PERSON"
        cases.append(c)
    for _ in range(150):  # negatives: no PII at all
        cases.append({"text": f"Check {safe_distractor()} and {safe_distractor()}, then {safe_distractor()}.", "spans": [], "kind": "NONE"})
    rng.shuffle(cases)
    with OUT.open("w") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
