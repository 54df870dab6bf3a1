"""Generate protege's bundled demo traces: a fortnight of a realistic, mixed agent workload.

The output is ``src/protege/data/demo_traces.jsonl.gz``: one JSON object per line,

    {"request": {...}, "response": {...}, "metadata": {"task": ..., "workload": ..., "ts": ...}}

where ``request`` is an OpenAI chat-completions request body, ``response`` the full
``chat.completion`` object a large model (gpt-4o) would have returned, and ``metadata`` carries
the generator's true task label (what clustering should recover), the agent that made the call
and its unix timestamp. Lines are sorted by ``ts``; the calls span 14 days from 2025-05-05 UTC
with weekday/hour-of-day traffic shapes per agent.

Recurring tasks (unequal volumes, several per agent):

* ``ticket_triage`` (support-agent): classify a support ticket; the answer is one label.
* ``travel_tools`` (travel-agent): pick and fill tool calls from six travel tools, some parallel,
  some depending on earlier turns and tool results.
* ``order_extraction`` (support-agent): customer email -> JSON under a strict ``json_schema``.
* ``policy_faq`` (support-agent): answer a customer's question from a store-policy snippet.
* ``incident_summary`` (ops-agent): summarise an incident report in 2-3 sentences.
* ``ui_translation`` (localization-agent): English UI strings -> French/Spanish/German.
* ``lead_extraction`` (sales-agent): inbound sales enquiry -> JSON under a strict ``json_schema``.
* ``open_ended`` (~9%, mostly assistant-chat, a few inside travel-agent and support-agent with their
  system prompts): one-off requests that should stay on a big model, drawn from ~55 kinds (no kind more
  than ~1.4x its fair share, no question or answer repeated) so that clustering finds no task in them.

Every reference answer is correct by construction: extracted JSON holds exactly the values
written into the text and validates against its schema, labels are the generator's labels,
tool arguments are those the user asked for and validate against the tool's parameters,
translations come from a hand-written parallel phrase bank, summaries from the report's fields.
User content carries fake personal data (names, emails, phone numbers, Luhn-valid card numbers,
IBANs with valid check digits, SSN-like numbers, IP addresses) for the scrubbing stage.

Standard library only; the output is byte-identical for the same ``--seed`` and ``--calls``
(gzip with mtime 0)::

    python scripts/make_demo_traces.py                      # the bundled file
    python scripts/make_demo_traces.py --out /tmp/t.jsonl.gz --seed 1 --calls 10000
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import json
import math
import random
import string
import sys
import unicodedata
from collections import Counter
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "protege" / "data" / "demo_traces.jsonl.gz"
DEFAULT_SEED = 0
DEFAULT_CALLS = 3600
START = dt.datetime(2025, 5, 5, tzinfo=dt.UTC)  # a Monday
DAYS = 14

# task -> (share of calls, workload); open_ended picks its workload per call
TASKS: dict[str, tuple[float, str]] = {
    "ticket_triage": (0.26, "support-agent"),
    "travel_tools": (0.20, "travel-agent"),
    "order_extraction": (0.155, "support-agent"),
    "policy_faq": (0.10, "support-agent"),
    "incident_summary": (0.075, "ops-agent"),
    "ui_translation": (0.07, "localization-agent"),
    "lead_extraction": (0.05, "sales-agent"),
    "open_ended": (0.09, "assistant-chat"),
}

RESPONSE_MODEL = {
    "gpt-4o": ("gpt-4o-2024-08-06", "fp_a7d06e42a7"),
    "gpt-4o-mini": ("gpt-4o-mini-2024-07-18", "fp_0ba0d124f1"),
    "gpt-4.1": ("gpt-4.1-2025-04-14", "fp_b38e740b47"),
}

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


# --------------------------------------------------------------------------------------------
# fake personal data
# --------------------------------------------------------------------------------------------

FIRST_NAMES = ["James", "Maria", "Wei", "Aisha", "Lukas", "Sofia", "Mateo", "Priya", "Chen", "Olga",
               "Kwame", "Emma", "Noah", "Fatima", "Hiroshi", "Elena", "Diego", "Amara", "Liam", "Chloé",
               "Jonas", "Ananya", "Tomás", "Ingrid", "Omar", "Grace", "Yuki", "Pierre", "Zanele",
               "Mohammed", "Hannah", "Rafael", "Mei", "Oliver", "Camille", "Arjun", "Lucía", "Felix",
               "Nia", "Daniel", "Ava", "Sven", "Isabel", "Kofi", "Leila", "Marco", "Sara", "Ethan",
               "Julia", "Tariq", "Beatriz", "Connor", "Divya", "Malik", "Rosa", "Stefan", "Thandiwe"]
LAST_NAMES = ["Smith", "García", "Müller", "Okafor", "Nguyen", "Rossi", "Kowalski", "Patel", "Johansson",
              "Dubois", "Tanaka", "Silva", "Kim", "Hernández", "O'Brien", "Novak", "Mensah", "Fischer",
              "Ivanova", "Chen", "Haddad", "Lindqvist", "Moreau", "Costa", "Yamamoto", "Schmidt",
              "Adeyemi", "Larsen", "Romero", "Walsh", "Kaur", "Bianchi", "Petrov", "Dupont", "Sato",
              "Ferreira", "Brown", "Jansen", "Cohen", "Mwangi", "Andersen", "Gómez", "Wright",
              "Popescu", "Reyes", "Nakamura", "Eriksen", "Oyelaran", "Murphy", "Vasquez"]
MAIL_DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "hotmail.co.uk",
                "web.de", "orange.fr", "gmx.net", "fastmail.com"]
STREETS = ["Maple Avenue", "Oak Street", "Harbor View Road", "Elm Court", "Kingsley Road", "Birch Lane",
           "Riverside Drive", "Church Street", "Station Road", "Highland Avenue", "Willow Way", "Park Lane"]
ADDRESS_CITIES = [("Portland, OR", "972{:02d}", "us"), ("Austin, TX", "787{:02d}", "us"),
                  ("Denver, CO", "802{:02d}", "us"), ("Columbus, OH", "432{:02d}", "us"),
                  ("Leeds", "LS{} {}AB", "uk"), ("Bristol", "BS{} {}QT", "uk"), ("Berlin", "10{:03d}", "de"),
                  ("Hamburg", "20{:03d}", "de"), ("Lyon", "6900{}", "fr"), ("Toronto, ON", "M5V {}K{}", "ca")]


def ascii_fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and (c.isalnum()))


def luhn_check_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def iban_check_digits(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    number = "".join(str(int(c, 36)) for c in rearranged)
    return f"{98 - int(number) % 97:02d}"


class Fake:
    """Fake personal data drawn from one seeded random generator."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def name(self) -> tuple[str, str]:
        return self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)

    def full_name(self) -> str:
        return " ".join(self.name())

    def email(self, first: str | None = None, last: str | None = None, domain: str | None = None) -> str:
        r = self.rng
        if first is None or last is None:
            first, last = self.name()
        f, l_ = ascii_fold(first).lower(), ascii_fold(last).lower()
        local = r.choice([f"{f}.{l_}", f"{f}{l_}", f"{f[0]}.{l_}", f"{f}_{l_}{r.randint(1, 99)}",
                          f"{f}{r.randint(70, 99)}", f"{l_}.{f}"])
        return f"{local}@{domain or r.choice(MAIL_DOMAINS)}"

    def phone(self) -> str:
        r = self.rng
        kind = r.randrange(6)
        if kind == 0:
            return f"+1 ({r.choice([212, 415, 312, 617, 206, 512, 303, 646])}) 555-01{r.randint(0, 99):02d}"
        if kind == 1:
            return f"{r.choice([415, 312, 737, 503])}-555-01{r.randint(0, 99):02d}"
        if kind == 2:
            return f"+44 7700 900{r.randint(0, 999):03d}"
        if kind == 3:
            return "+33 6 " + " ".join(f"{r.randint(10, 99)}" for _ in range(4))
        if kind == 4:
            return f"+49 151 {r.randint(1000000, 9999999)}"
        return f"+34 6{r.randint(10, 99)} {r.randint(100, 999)} {r.randint(100, 999)}"

    def card(self) -> str:
        """A Luhn-valid payment card number, formatted the way people paste them."""
        r = self.rng
        kind = r.randrange(3)
        if kind == 0:
            body = "4" + "".join(r.choice(string.digits) for _ in range(14))
        elif kind == 1:
            body = f"5{r.randint(1, 5)}" + "".join(r.choice(string.digits) for _ in range(13))
        else:
            body = r.choice(["34", "37"]) + "".join(r.choice(string.digits) for _ in range(12))
        digits = body + luhn_check_digit(body)
        sep = r.choice([" ", "-", ""])
        if len(digits) == 15:
            return sep.join([digits[:4], digits[4:10], digits[10:]])
        return sep.join(digits[i:i + 4] for i in range(0, 16, 4))

    def expiry(self) -> str:
        return f"{self.rng.randint(1, 12):02d}/{self.rng.randint(26, 31)}"

    def iban(self) -> str:
        r = self.rng
        country = r.choice(["DE", "FR", "GB", "ES", "NL"])
        digits = lambda n: "".join(r.choice(string.digits) for _ in range(n))
        letters = lambda n: "".join(r.choice(string.ascii_uppercase) for _ in range(n))
        bban = {"DE": lambda: digits(18), "FR": lambda: digits(23), "GB": lambda: letters(4) + digits(14),
                "ES": lambda: digits(20), "NL": lambda: letters(4) + digits(10)}[country]()
        raw = country + iban_check_digits(country, bban) + bban
        return " ".join(raw[i:i + 4] for i in range(0, len(raw), 4))

    def ssn(self) -> str:
        r = self.rng
        area = r.randint(1, 898)
        area = 667 if area == 666 else area
        return f"{area:03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"

    def ip(self) -> str:
        r = self.rng
        kind = r.randrange(4)
        if kind == 0:
            return f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
        if kind == 1:
            return f"192.168.{r.randint(0, 20)}.{r.randint(2, 254)}"
        return f"{r.choice([81, 86, 92, 109, 145, 178, 185, 203, 212])}.{r.randint(1, 254)}.{r.randint(0, 255)}.{r.randint(1, 254)}"

    def address(self) -> str:
        r = self.rng
        city, zfmt, kind = r.choice(ADDRESS_CITIES)
        street = r.choice(STREETS)
        num = r.randint(2, 2400)
        if kind == "us":
            apt = r.choice(["", f", Apt {r.randint(1, 30)}{r.choice('ABCD')}"])
            return f"{num} {street}{apt}, {city} {zfmt.format(r.randint(1, 99))}"
        if kind == "uk":
            return f"{r.randint(1, 180)} {street}, {city} {zfmt.format(r.randint(1, 16), r.randint(1, 9))}"
        if kind == "de":
            return f"{r.choice(['Lindenstraße', 'Bergstraße', 'Gartenweg', 'Schillerstraße'])} {r.randint(1, 90)}, {zfmt.format(r.randint(100, 999))} {city}"
        if kind == "fr":
            return f"{r.randint(1, 90)} {r.choice(['rue des Lilas', 'avenue Jean Jaurès', 'rue Victor Hugo'])}, {zfmt.format(r.randint(1, 9))} {city}"
        return f"{num} {street}, {city} {zfmt.format(r.randint(1, 9), r.randint(1, 9))}"

    def code(self, n: int, alphabet: str = string.ascii_uppercase + string.digits) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def compact(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def date_words(rng: random.Random, d: dt.date) -> str:
    """A date the way users write it (year left out: always the next such date)."""
    m = MONTHS[d.month - 1]
    return rng.choice([f"{m} {d.day}", f"{d.day} {m}", f"{m} {ordinal(d.day)}", f"the {ordinal(d.day)} of {m}",
                       d.isoformat(), f"{m[:3]} {d.day}"])


def on_date(rng: random.Random, d: dt.date, today: dt.date) -> str:
    if d == today + dt.timedelta(days=1) and rng.random() < 0.5:
        return "tomorrow"
    return "on " + date_words(rng, d)


def pick(rng: random.Random, options):
    return options[rng.randrange(len(options))]


def weighted(rng: random.Random, pairs):
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for item, w in pairs:
        x -= w
        if x < 0:
            return item
    return pairs[-1][0]


def num_text(rng: random.Random, n: int) -> str:
    return NUMBER_WORDS[n] if n in NUMBER_WORDS and rng.random() < 0.5 else str(n)


def money_text(amount: float) -> str:
    return f"{amount:,.2f}" if amount != int(amount) else f"{int(amount):,}"


# --------------------------------------------------------------------------------------------
# task 1: ticket triage (classification)
# --------------------------------------------------------------------------------------------

TRIAGE_LABELS = ["billing", "technical", "account", "shipping", "other"]
TRIAGE_SYSTEM = [
    ("You are the triage step of Helix Support's ticket pipeline. Read the customer's ticket and "
    "classify it into exactly one queue.\n"
    "Labels: billing, technical, account, shipping, other\n"
    "- billing: charges, refunds, invoices, discounts, payment methods\n"
    "- technical: bugs, errors, crashes, performance, integrations, API problems\n"
    "- account: sign-in, passwords, two-factor codes, profile changes, account deletion or security\n"
    "- shipping: delivery, tracking, damaged or missing parcels, delivery address\n"
    "- other: anything else (feedback, feature requests, partnerships, press, jobs)\n"
    "Respond with the label only, in lowercase, with no punctuation."),
    ("Route incoming support tickets for Helix Support.\n"
    "Labels: billing, technical, account, shipping, other\n"
    "Pick the single best label for the customer's main problem. If a ticket mentions several "
    "problems, choose the one the customer asks us to act on. Output just the label, nothing else."),
]
TRIAGE_SENTENCES = {
    "billing": [
        "I was charged twice for my {plan} subscription this month ({amount} each time).",
        "My card ending in {last4} was billed {amount} even though I cancelled last week.",
        "Can you send me a VAT invoice for order {order}? I need it for my expense report.",
        "I'd like a refund for the annual plan, it auto-renewed without any reminder.",
        "The amount on my latest invoice is higher than the price I signed up for.",
        "Please update the card on file to {card}, expiry {exp}.",
        "There's a {amount} charge from you on my statement that I don't recognise.",
        "My payment keeps getting declined although the card {card} works everywhere else.",
        "Please switch my billing from monthly to yearly and apply the annual discount.",
        "I was promised a {pct}% discount but it wasn't applied at checkout.",
        "Please refund the {amount} to my bank account {iban}, the card I paid with is closed.",
        "For the tax form you asked for, my SSN is {ssn}. Can you now reissue the invoice with my details?",
    ],
    "technical": [
        "The app crashes every time I open the {feature} screen on my {device}.",
        "I'm getting error {errcode} when I try to sync. My IP is {ip} in case you need it.",
        "Your API returns HTTP 500 for POST /v2/{endpoint} since this morning.",
        "The dashboard never finishes loading, it just spins. I tried Chrome and Firefox.",
        "Webhooks to our endpoint at {ip} stopped arriving after your last update.",
        "Export to CSV produces an empty file no matter which date range I pick.",
        "Push notifications stopped working after updating to version {version}.",
        "The {integration} integration keeps disconnecting every few hours.",
        "Search returns documents from folders I filtered out, looks like a bug in the filters.",
        "Uploading files larger than 10 MB fails with a timeout error.",
        "Requests from our server {ip} get a 429 even though we are far below the rate limit.",
    ],
    "account": [
        "I can't sign in, it says my password is wrong but I reset it an hour ago.",
        "I lost my phone and can't get the two-factor code. My old number was {phone}.",
        "Please change the email on my account from {email} to {email2}.",
        "I want my account and all of my data deleted.",
        "My account got locked after too many attempts, please unlock it. Username: {username}.",
        "How do I add a second admin to our workspace?",
        "I never received the verification email at {email}.",
        "Someone signed in to my account from {ip} and it wasn't me.",
        "Please merge my two accounts ({email} and {email2}).",
        "I need my name on the account changed to {name}.",
    ],
    "shipping": [
        "My package for order {order} says delivered but I never got it.",
        "Tracking number {tracking} hasn't updated in six days.",
        "The box arrived crushed and the {product} inside is broken.",
        "Can you change the delivery address to {address}? It hasn't shipped yet.",
        "When will order {order} ship? It has been more than a week.",
        "The courier left my parcel with a neighbour I don't know.",
        "Do you deliver to {country}? The checkout won't accept my address.",
        "I received someone else's parcel instead of my order {order}.",
        "I paid for express delivery but the parcel is coming with standard shipping.",
    ],
    "other": [
        "Do you have any plans for a Linux desktop app?",
        "I'd love to see a dark mode in the web version.",
        "We're a {industry} company interested in a partnership, who should I talk to?",
        "Just wanted to say {agent} from your team was amazing last week, thank you!",
        "I'm a journalist writing about {topic}, could someone answer a few questions?",
        "Are you hiring? I'm interested in the {role} position I saw on LinkedIn.",
        "Where can I find your company's sustainability report?",
        "It would be great if the mobile app supported landscape mode on tablets.",
        "Could your CEO speak at our {industry} meetup next month?",
    ],
}
TRIAGE_CONTEXT = ["I've been a customer for {years} years.", "This is my second message about this.",
                  "Thanks in advance.", "Hope you can help.", "Not urgent, but I'd appreciate a reply.",
                  "This is quite urgent for us.", "I'm on the {plan} plan."]
TRIAGE_SLOTS = {
    "plan": ["Pro", "Team", "Starter", "Business", "Premium"],
    "feature": ["Reports", "Calendar", "Inbox", "Settings", "Analytics", "Projects"],
    "device": ["iPhone 14", "Pixel 8", "Galaxy S23", "iPad Air", "MacBook", "Windows laptop"],
    "errcode": ["E1042", "SYNC_TIMEOUT", "ERR_403", "0x80070005", "E_CONN_RESET", "AUTH-17"],
    "endpoint": ["invoices", "contacts", "events", "orders", "webhooks", "files"],
    "version": ["5.2.1", "6.0.0", "4.18.3", "7.1.0"],
    "integration": ["Slack", "Salesforce", "Google Drive", "Zapier", "HubSpot", "Jira"],
    "product": ["desk lamp", "coffee grinder", "monitor", "ceramic vase", "headphones", "blender"],
    "country": ["Iceland", "Malta", "Chile", "South Korea", "New Zealand", "Estonia"],
    "industry": ["fintech", "healthcare", "logistics", "edtech", "retail", "gaming"],
    "topic": ["remote work tools", "AI in customer service", "data privacy", "small business software"],
    "role": ["Senior Backend Engineer", "Product Designer", "Support Lead", "Data Analyst"],
    "pct": ["10", "15", "20", "25"],
}


def triage_ticket(rng: random.Random, fake: Fake, label: str) -> str:
    first, last = fake.name()
    email = fake.email(first, last)

    def fill(s: str) -> str:
        vals = {k: pick(rng, v) for k, v in TRIAGE_SLOTS.items()}
        vals.update(amount=f"${rng.randint(9, 480)}.{rng.choice(['00', '99', '49'])}", last4=f"{rng.randint(0, 9999):04d}",
                    order=f"#{rng.randint(100000, 999999)}", card=fake.card(), exp=fake.expiry(), iban=fake.iban(),
                    ssn=fake.ssn(), ip=fake.ip(), phone=fake.phone(), email=email, email2=fake.email(),
                    username=f"{ascii_fold(first).lower()}{rng.randint(1, 999)}", name=fake.full_name(),
                    tracking=f"1Z{fake.code(16)}", address=fake.address(), agent=rng.choice(FIRST_NAMES),
                    years=str(rng.randint(2, 9)))
        return s.format(**vals)

    sentences = rng.sample(TRIAGE_SENTENCES[label], k=1 if rng.random() < 0.7 else 2)
    body = " ".join(fill(s) for s in sentences)
    if rng.random() < 0.45:
        body += " " + fill(pick(rng, TRIAGE_CONTEXT))
    greeting = pick(rng, ["Hi,", "Hello,", "Hi there,", "Dear Helix team,", "Hey,", ""])
    sign = pick(rng, [f"{first}", f"{first} {last}", f"{first} {last}\n{email}", f"{first}\n{fake.phone()}",
                      f"Best regards,\n{first} {last}", ""])
    subject = pick(rng, {"billing": ["Billing question", "Charge on my card", "Invoice", "Refund"],
                         "technical": ["Bug", "Error", "App not working", "Problem"],
                         "account": ["Login issue", "My account", "Account help", "Security"],
                         "shipping": ["Delivery", "Where is my order", "Parcel", "Shipping"],
                         "other": ["Question", "Feedback", "Hello", "Inquiry"]}[label])
    text = "\n\n".join(p for p in [greeting, body, sign] if p)
    style = rng.randrange(3)
    if style == 0:
        return f"Subject: {subject}\nFrom: {first} {last} <{email}>\n\n{text}"
    if style == 1:
        return f"Channel: chat\nCustomer: {first} {last} ({email})\nMessage: {body}"
    return text


def gen_ticket_triage(rng: random.Random, fake: Fake, ts: float) -> dict:
    label = weighted(rng, [("billing", 0.27), ("technical", 0.3), ("account", 0.18), ("shipping", 0.17),
                           ("other", 0.08)])
    ticket = triage_ticket(rng, fake, label)
    day = int((ts - START.timestamp()) // 86400)
    system = TRIAGE_SYSTEM[0 if day < 8 else 1]
    user = pick(rng, ["Ticket:\n{t}", "Classify this support ticket:\n\n{t}", "{t}"]).format(t=ticket)
    request = {"model": "gpt-4o", "messages": [{"role": "system", "content": system},
                                               {"role": "user", "content": user}],
               "temperature": 0, "max_tokens": 5}
    return {"request": request, "content": label}


# --------------------------------------------------------------------------------------------
# task 2: travel assistant tool calls
# --------------------------------------------------------------------------------------------

CITIES = [("Lisbon", "LIS"), ("Madrid", "MAD"), ("Barcelona", "BCN"), ("Paris", "CDG"), ("London", "LHR"),
          ("Amsterdam", "AMS"), ("Berlin", "BER"), ("Munich", "MUC"), ("Rome", "FCO"), ("Milan", "MXP"),
          ("Vienna", "VIE"), ("Zurich", "ZRH"), ("Copenhagen", "CPH"), ("Stockholm", "ARN"), ("Dublin", "DUB"),
          ("Athens", "ATH"), ("Istanbul", "IST"), ("Dubai", "DXB"), ("Singapore", "SIN"), ("Tokyo", "HND"),
          ("Seoul", "ICN"), ("Bangkok", "BKK"), ("Sydney", "SYD"), ("New York", "JFK"), ("Boston", "BOS"),
          ("Chicago", "ORD"), ("San Francisco", "SFO"), ("Los Angeles", "LAX"), ("Seattle", "SEA"),
          ("Toronto", "YYZ"), ("Montreal", "YUL"), ("Mexico City", "MEX"), ("São Paulo", "GRU"),
          ("Cape Town", "CPT"), ("Prague", "PRG"), ("Warsaw", "WAW"), ("Budapest", "BUD"), ("Edinburgh", "EDI")]
CURRENCIES = [("USD", ["US dollars", "USD", "dollars (US)"]), ("EUR", ["euros", "EUR", "euro"]),
              ("GBP", ["British pounds", "GBP", "pounds sterling"]), ("JPY", ["Japanese yen", "JPY", "yen"]),
              ("CHF", ["Swiss francs", "CHF"]), ("CAD", ["Canadian dollars", "CAD"]),
              ("AUD", ["Australian dollars", "AUD"]), ("MXN", ["Mexican pesos", "MXN"]),
              ("SEK", ["Swedish kronor", "SEK"])]
AIRLINES = ["LH", "AF", "KL", "BA", "IB", "TP", "UA", "DL", "AA", "EK", "SQ", "LX", "OS", "SK", "AZ", "TK"]
DATE_PATTERN = "^\\d{4}-\\d{2}-\\d{2}$"
IATA_PATTERN = "^[A-Z]{3}$"
CANCEL_REASONS = {
    "change_of_plans": ["my plans changed", "the trip is off", "we're not going anymore"],
    "illness": ["I'm sick", "I've come down with the flu", "my doctor told me not to travel"],
    "schedule_conflict": ["I have a work conflict that week", "my conference got moved to other dates"],
    "found_better_price": ["I found a cheaper option elsewhere", "I got a better deal on another site"],
}
TRAVEL_TOOLS = [
    {"type": "function", "function": {
        "name": "search_flights",
        "description": "Search available flights between two airports on a date, optionally with a return date.",
        "parameters": {"type": "object", "properties": {
            "origin": {"type": "string", "pattern": IATA_PATTERN, "description": "IATA code of the departure city's main airport"},
            "destination": {"type": "string", "pattern": IATA_PATTERN, "description": "IATA code of the arrival city's main airport"},
            "departure_date": {"type": "string", "pattern": DATE_PATTERN, "description": "YYYY-MM-DD"},
            "return_date": {"type": "string", "pattern": DATE_PATTERN, "description": "YYYY-MM-DD, for round trips"},
            "passengers": {"type": "integer", "minimum": 1, "maximum": 9, "description": "Number of travellers (default 1)"},
            "cabin": {"type": "string", "enum": ["economy", "premium_economy", "business", "first"]}},
            "required": ["origin", "destination", "departure_date"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "search_hotels",
        "description": "Search hotels in a city for a stay.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "check_in": {"type": "string", "pattern": DATE_PATTERN, "description": "YYYY-MM-DD"},
            "check_out": {"type": "string", "pattern": DATE_PATTERN, "description": "YYYY-MM-DD"},
            "guests": {"type": "integer", "minimum": 1, "maximum": 8},
            "max_price_per_night": {"type": "number", "exclusiveMinimum": 0, "description": "In the customer's currency"}},
            "required": ["city", "check_in", "check_out"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Weather forecast for a city, for today or a given date.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"},
            "date": {"type": "string", "pattern": DATE_PATTERN, "description": "YYYY-MM-DD; omit for today"},
            "units": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "convert_currency",
        "description": "Convert an amount of money between currencies at today's rate.",
        "parameters": {"type": "object", "properties": {
            "amount": {"type": "number", "exclusiveMinimum": 0},
            "from_currency": {"type": "string", "pattern": IATA_PATTERN, "description": "ISO 4217 code"},
            "to_currency": {"type": "string", "pattern": IATA_PATTERN, "description": "ISO 4217 code"}},
            "required": ["amount", "from_currency", "to_currency"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "get_booking",
        "description": "Look up an existing booking by its reference and the traveller's last name.",
        "parameters": {"type": "object", "properties": {
            "booking_reference": {"type": "string", "pattern": "^[A-Z0-9]{6}$"},
            "last_name": {"type": "string"}},
            "required": ["booking_reference", "last_name"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "cancel_booking",
        "description": "Cancel an existing booking.",
        "parameters": {"type": "object", "properties": {
            "booking_reference": {"type": "string", "pattern": "^[A-Z0-9]{6}$"},
            "reason": {"type": "string", "enum": ["change_of_plans", "illness", "schedule_conflict", "found_better_price", "other"]}},
            "required": ["booking_reference"], "additionalProperties": False}}},
]


def travel_system(rng: random.Random, fake: Fake, ts: float) -> tuple[str, dict | None]:
    now = dt.datetime.fromtimestamp(ts, dt.UTC)
    today = f"{WEEKDAYS[now.weekday()]}, {now.date().isoformat()}"
    day = (now - START).days
    if day < 6:
        text = ("You are Wayfarer, the travel assistant of Globetrek Travel. Today is {today}.\n"
                "Use the tools to search flights and hotels, check the weather, convert currencies and look up "
                "or cancel bookings. Flights take IATA codes of the city's main airport; all dates are YYYY-MM-DD "
                "and refer to the next such date. Only pass the optional arguments the customer asked for.")
    else:
        text = ("You are Wayfarer, Globetrek Travel's booking assistant.\nCurrent date: {today}.\n"
                "Call the available functions whenever the customer asks for flights, hotels, weather, currency "
                "conversion or an existing booking. Use the main airport's IATA code for each city and ISO dates. "
                "Leave optional parameters out unless the customer specified them. You can call several functions "
                "at once when the request needs it.")
    text = text.format(today=today)
    profile = None
    if rng.random() < 0.35:
        first, last = fake.name()
        home = pick(rng, CITIES)
        profile = {"first": first, "last": last, "home": home}
        text += (f"\n\nSigned-in customer: {first} {last}, {fake.email(first, last)}, phone {fake.phone()}, "
                 f"loyalty no. GT{rng.randint(10000000, 99999999)}, home airport {home[1]} ({home[0]}).")
    return text, profile


def call(name: str, args: dict) -> tuple[str, dict]:
    return name, args


def flight_request(rng: random.Random, today: dt.date, profile: dict | None):
    """A flight search sentence and its arguments."""
    origin, dest = rng.sample(CITIES, 2)
    use_home = profile is not None and rng.random() < 0.5 and profile["home"] != dest
    if use_home:
        origin = profile["home"]
    dep = today + dt.timedelta(days=rng.randint(1, 120))
    ret = dep + dt.timedelta(days=rng.randint(2, 16)) if rng.random() < 0.55 else None
    pax = rng.choice([None, None, 1, 2, 2, 3, 4])
    cabin = rng.choice([None] * 6 + ["business", "premium_economy", "economy", "first"])
    o_txt = "" if use_home else f" from {origin[0] if rng.random() < 0.8 else origin[1]}"
    d_txt = dest[0] if rng.random() < 0.85 else dest[1]
    when = on_date(rng, dep, today)
    parts = [pick(rng, ["Find me a flight", "I need flights", "Can you look for flights", "Search flights",
                        "Any flights", "Show me flights"]) + f"{o_txt} to {d_txt} {when}"]
    if ret:
        parts.append(pick(rng, [f"returning {date_words(rng, ret)}", f"coming back {date_words(rng, ret)}",
                                f"with the return on {date_words(rng, ret)}"]))
    if pax:
        parts.append(pick(rng, [f"for {num_text(rng, pax)} {'person' if pax == 1 else 'people'}",
                                f"for {num_text(rng, pax)} {'adult' if pax == 1 else 'adults'}"]) if pax > 1 or rng.random() < 0.5 else "just for me")
    if cabin:
        parts.append({"business": "in business class", "premium_economy": "in premium economy",
                      "economy": "economy class", "first": "first class please"}[cabin])
    text = ", ".join(parts) + pick(rng, [".", "?", "", " please."])
    args = {"origin": origin[1], "destination": dest[1], "departure_date": dep.isoformat()}
    if ret:
        args["return_date"] = ret.isoformat()
    if pax:
        args["passengers"] = pax
    if cabin:
        args["cabin"] = cabin
    return text, args, dest


def hotel_request(rng: random.Random, today: dt.date, city: str | None = None):
    city = city or pick(rng, CITIES)[0]
    cin = today + dt.timedelta(days=rng.randint(1, 100))
    nights = rng.randint(1, 9)
    cout = cin + dt.timedelta(days=nights)
    guests = rng.choice([None, None, 1, 2, 2, 3, 4])
    price = rng.choice([None, None, 90, 120, 150, 180, 200, 250, 300])
    if rng.random() < 0.5:
        span = f"from {date_words(rng, cin)} to {date_words(rng, cout)}"
    else:
        span = f"checking in {date_words(rng, cin)} for {num_text(rng, nights)} night{'s' if nights > 1 else ''}"
    parts = [pick(rng, [f"I need a hotel in {city}", f"Find a hotel in {city}", f"Hotels in {city}",
                        f"Can you find me somewhere to stay in {city}", f"Look for a room in {city}"]), span]
    if guests:
        parts.append(f"for {num_text(rng, guests)} guest{'s' if guests > 1 else ''}")
    if price:
        parts.append(pick(rng, [f"under {price} a night", f"max {price} per night", f"no more than {price}/night"]))
    text = ", ".join(parts) + pick(rng, [".", "?", ""])
    args = {"city": city, "check_in": cin.isoformat(), "check_out": cout.isoformat()}
    if guests:
        args["guests"] = guests
    if price:
        args["max_price_per_night"] = price
    return text, args


def weather_request(rng: random.Random, today: dt.date, cities: list[str]):
    when = None
    r = rng.random()
    if r < 0.35:
        when = today + dt.timedelta(days=1)
        w_txt = " tomorrow"
    elif r < 0.65:
        when = today + dt.timedelta(days=rng.randint(2, 10))
        w_txt = " on " + date_words(rng, when)
    else:
        w_txt = pick(rng, [" today", " right now", ""])
    units = rng.choice([None, None, None, "fahrenheit", "celsius"])
    names = cities[0] if len(cities) == 1 else ", ".join(cities[:-1]) + " and " + cities[-1]
    text = pick(rng, [f"What's the weather like in {names}{w_txt}?", f"Weather for {names}{w_txt}",
                      f"Is it going to rain in {names}{w_txt}?", f"How warm will it be in {names}{w_txt}?"])
    if units:
        text += f" ({'in Fahrenheit' if units == 'fahrenheit' else 'in Celsius'} please)"
    calls = []
    for c in cities:
        args = {"city": c}
        if when:
            args["date"] = when.isoformat()
        if units:
            args["units"] = units
        calls.append(call("get_weather", args))
    return text, calls


def amount_value(rng: random.Random) -> float:
    if rng.random() < 0.7:
        return float(rng.choice([20, 45, 50, 75, 100, 120, 150, 200, 250, 300, 480, 500, 750, 1000, 1250, 2000, 3500]))
    return round(rng.uniform(5, 900), 2)


def num_arg(x: float):
    return int(x) if x == int(x) else x


def convert_request(rng: random.Random, n_targets: int):
    cur = rng.sample(CURRENCIES, 1 + n_targets)
    amount = amount_value(rng)
    src = pick(rng, cur[0][1])
    targets = [pick(rng, c[1]) for c in cur[1:]]
    in_tgt, to_tgt = " and ".join(targets), " and to ".join(targets)
    text = pick(rng, [f"How much is {money_text(amount)} {src} in {in_tgt}?", f"Convert {money_text(amount)} {src} to {to_tgt}.",
                      f"What's {money_text(amount)} {src} in {in_tgt} today?"])
    calls = [call("convert_currency", {"amount": num_arg(amount), "from_currency": cur[0][0], "to_currency": c[0]})
             for c in cur[1:]]
    return text, calls


def tool_call_id(rng: random.Random) -> str:
    return "call_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(24))


def assistant_tool_msg(rng: random.Random, calls) -> dict:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": tool_call_id(rng), "type": "function",
                            "function": {"name": n, "arguments": compact(a)}} for n, a in calls]}


def fake_flights(rng: random.Random, args: dict) -> list[dict]:
    out = []
    dep = dt.date.fromisoformat(args["departure_date"])
    for _ in range(rng.randint(2, 3)):
        h = rng.randint(6, 21)
        out.append({"flight": f"{rng.choice(AIRLINES)} {rng.randint(100, 2999)}",
                    "depart": f"{dep.isoformat()}T{h:02d}:{rng.choice(['05', '20', '35', '50'])}",
                    "stops": rng.choice([0, 0, 1]), "price": {"amount": rng.randint(89, 1400), "currency": "EUR"}})
    return out


def gen_travel_tools(rng: random.Random, fake: Fake, ts: float) -> dict:
    system, profile = travel_system(rng, fake, ts)
    today = dt.datetime.fromtimestamp(ts, dt.UTC).date()
    messages = [{"role": "system", "content": system}]
    scenario = weighted(rng, [("flight", 0.26), ("hotel", 0.17), ("weather", 0.1), ("convert", 0.08),
                              ("lookup", 0.07), ("cancel", 0.06), ("flight_hotel", 0.08), ("multi_weather", 0.05),
                              ("multi_convert", 0.03), ("followup_hotel", 0.06), ("lookup_then_cancel", 0.04)])
    if scenario == "flight":
        text, args, _ = flight_request(rng, today, profile)
        calls = [call("search_flights", args)]
    elif scenario == "hotel":
        text, args = hotel_request(rng, today)
        calls = [call("search_hotels", args)]
    elif scenario == "weather":
        text, calls = weather_request(rng, today, [pick(rng, CITIES)[0]])
    elif scenario == "multi_weather":
        text, calls = weather_request(rng, today, [c[0] for c in rng.sample(CITIES, rng.randint(2, 3))])
    elif scenario == "convert":
        text, calls = convert_request(rng, 1)
    elif scenario == "multi_convert":
        text, calls = convert_request(rng, 2)
    elif scenario in ("lookup", "cancel", "lookup_then_cancel"):
        ref = fake.code(6)
        last = profile["last"] if profile and rng.random() < 0.5 else rng.choice(LAST_NAMES)
        lookup_text = pick(rng, [f"Can you pull up my booking {ref}? Last name {last}.",
                                 f"I'd like to check reservation {ref}, the surname is {last}.",
                                 f"Booking reference {ref}, name {last}: what are the details?"])
        reason = rng.choice([None, None] + list(CANCEL_REASONS))
        reason_txt = f", {pick(rng, CANCEL_REASONS[reason])}" if reason else ""
        cancel_args = {"booking_reference": ref}
        if reason:
            cancel_args["reason"] = reason
        if scenario == "lookup":
            text, calls = lookup_text, [call("get_booking", {"booking_reference": ref, "last_name": last})]
        elif scenario == "cancel":
            text = pick(rng, [f"Please cancel booking {ref}{reason_txt}.", f"I need to cancel {ref}{reason_txt}.",
                              f"Cancel my reservation {ref} please{reason_txt}."])
            calls = [call("cancel_booking", cancel_args)]
        else:
            prev = [call("get_booking", {"booking_reference": ref, "last_name": last})]
            am = assistant_tool_msg(rng, prev)
            dest = pick(rng, CITIES)
            when = today + dt.timedelta(days=rng.randint(3, 60))
            result = {"booking_reference": ref, "status": "confirmed", "traveller": f"{rng.choice(FIRST_NAMES)} {last}",
                      "flight": f"{rng.choice(AIRLINES)} {rng.randint(100, 2999)}", "destination": dest[1],
                      "date": when.isoformat()}
            messages += [{"role": "user", "content": lookup_text}, am,
                         {"role": "tool", "tool_call_id": am["tool_calls"][0]["id"], "content": compact(result)},
                         {"role": "assistant", "content": f"I found booking {ref}: flight {result['flight']} to {dest[0]} on "
                                                          f"{when.isoformat()}, status confirmed. Anything you'd like to change?"}]
            text = pick(rng, [f"Yes, please cancel it{reason_txt}.", f"Cancel that one{reason_txt}.",
                              f"Actually I want to cancel it{reason_txt}."])
            calls = [call("cancel_booking", cancel_args)]
    elif scenario == "flight_hotel":
        ftext, fargs, dest = flight_request(rng, today, profile)
        ftext = ftext.rstrip(".? ").removesuffix(" please")
        if "return_date" not in fargs:
            fargs["return_date"] = (dt.date.fromisoformat(fargs["departure_date"]) + dt.timedelta(days=rng.randint(2, 10))).isoformat()
            ftext += f", back on {date_words(rng, dt.date.fromisoformat(fargs['return_date']))}"
        ftext += "."
        hargs = {"city": dest[0], "check_in": fargs["departure_date"], "check_out": fargs["return_date"]}
        if "passengers" in fargs:
            hargs["guests"] = fargs["passengers"]
        htext = pick(rng, [f"Also find a hotel in {dest[0]} for those dates.", f"And a hotel in {dest[0]} for the same nights.",
                           f"I'll also need a hotel in {dest[0]} for the stay."])
        text = ftext + " " + htext
        calls = [call("search_flights", fargs), call("search_hotels", hargs)]
    else:  # followup_hotel: depends on the flight search two turns earlier
        ftext, fargs, dest = flight_request(rng, today, profile)
        if "return_date" not in fargs:
            fargs["return_date"] = (dt.date.fromisoformat(fargs["departure_date"]) + dt.timedelta(days=rng.randint(2, 10))).isoformat()
            ftext = ftext.rstrip(".? ").removesuffix(" please") + f", returning {date_words(rng, dt.date.fromisoformat(fargs['return_date']))}."
        am = assistant_tool_msg(rng, [call("search_flights", fargs)])
        flights = fake_flights(rng, fargs)
        cheapest = min(flights, key=lambda f: f["price"]["amount"])
        messages += [{"role": "user", "content": ftext}, am,
                     {"role": "tool", "tool_call_id": am["tool_calls"][0]["id"], "content": compact(flights)},
                     {"role": "assistant", "content": f"I found {len(flights)} options. The cheapest is {cheapest['flight']} "
                                                      f"at {cheapest['price']['amount']} EUR with {cheapest['stops']} stop(s)."}]
        price = rng.choice([None, 120, 150, 200])
        text = pick(rng, ["Great. Can you also find a hotel there for the same dates?", "Perfect, now I need a hotel for that trip.",
                          "Thanks! What hotels are there for those dates?"])
        hargs = {"city": dest[0], "check_in": fargs["departure_date"], "check_out": fargs["return_date"]}
        if "passengers" in fargs:
            hargs["guests"] = fargs["passengers"]
        if price:
            text += f" Max {price} a night."
            hargs["max_price_per_night"] = price
        calls = [call("search_hotels", hargs)]
    messages.append({"role": "user", "content": text})
    request = {"model": "gpt-4o", "messages": messages, "tools": TRAVEL_TOOLS,
               "tool_choice": "required" if rng.random() < 0.2 else "auto", "temperature": 0.2}
    if len(calls) > 1 or rng.random() < 0.3:
        request["parallel_tool_calls"] = True
    return {"request": request, "tool_calls": calls}


# --------------------------------------------------------------------------------------------
# task 3: order extraction (json_schema)
# --------------------------------------------------------------------------------------------

PRODUCTS = ["Merino Crew Sweater", "Trail Running Shoes", "Ceramic Pour-Over Set", "Linen Button-Down Shirt",
            "Insulated Water Bottle", "Wireless Earbuds", "Canvas Tote Bag", "Down Puffer Jacket",
            "Bamboo Cutting Board", "Yoga Mat", "Cast Iron Skillet", "Wool Beanie", "Leather Card Holder",
            "Desk Organizer", "Rain Shell Jacket", "Cotton Bath Towel", "LED Desk Lamp", "Hiking Socks",
            "Stainless Steel Kettle", "Noise-Cancelling Headphones"]
ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "customer_name": {"type": "string"},
        "email": {"type": ["string", "null"]},
        "phone": {"type": ["string", "null"]},
        "order_id": {"type": "string"},
        "request_type": {"type": "string", "enum": ["return", "exchange", "cancel", "status", "address_change", "refund"]},
        "items": {"type": "array", "items": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
            "required": ["name", "quantity"], "additionalProperties": False}},
        "new_address": {"type": ["string", "null"]},
    },
    "required": ["customer_name", "email", "phone", "order_id", "request_type", "items", "new_address"],
    "additionalProperties": False,
}
ORDER_SYSTEM = ("You extract structured data from customer emails for Helix Support's order operations team. "
                "Fill every field of the schema. Copy names, email addresses, phone numbers, order ids, product "
                "names and addresses exactly as they appear in the email. Use null for a field the email does not "
                "contain and an empty list when no products are mentioned. request_type is what the customer wants us to do.")


def items_text(rng: random.Random, items: list[tuple[str, int]]) -> str:
    parts = []
    for name, qty in items:
        form = rng.randrange(4)
        if qty == 1 and form == 0:
            parts.append(f"the {name}")
        elif form == 1:
            parts.append(f"{qty} x {name}")
        elif form == 2:
            parts.append(f"{name} (qty {qty})")
        else:
            parts.append(f"{qty}x {name}")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def gen_order_extraction(rng: random.Random, fake: Fake, ts: float) -> dict:
    first, last = fake.name()
    name = f"{first} {last}"
    email = fake.email(first, last)
    phone = fake.phone() if rng.random() < 0.45 else None
    order_id = pick(rng, [f"ORD-{rng.randint(100000, 999999)}", f"#{rng.randint(10000000, 99999999)}",
                          f"HX{rng.randint(1000, 9999)}-{fake.code(4)}"])
    kind = weighted(rng, [("return", 0.28), ("status", 0.24), ("exchange", 0.14), ("cancel", 0.12),
                          ("address_change", 0.1), ("refund", 0.12)])
    items = [(p, rng.choice([1, 1, 1, 2, 3])) for p in rng.sample(PRODUCTS, rng.choice([1, 1, 1, 2, 2, 3]))]
    new_address = None
    it = items_text(rng, items)
    mention_items = True
    if kind == "return":
        body = pick(rng, [f"I'd like to return {it} from order {order_id}. {pick(rng, ['It does not fit.', 'Not what I expected.', 'The colour is different from the photos.'])}",
                          f"Order {order_id}: I want to send back {it}. How do I get a return label?"])
    elif kind == "exchange":
        items = items[:1]
        it = items_text(rng, items)
        body = pick(rng, [f"Could I exchange {it} from order {order_id} for a size {rng.choice(['S', 'M', 'L', 'XL', '42', '44'])}?",
                          f"I'd like to swap {it} (order {order_id}) for a different colour."])
    elif kind == "cancel":
        mention_items = rng.random() < 0.6
        body = (f"Please cancel order {order_id}, I ordered {it} by mistake." if mention_items
                else f"Please cancel my order {order_id} before it ships. Thanks.")
    elif kind == "status":
        mention_items = rng.random() < 0.6
        body = (f"Where is my order {order_id}? I ordered {it} {rng.randint(5, 15)} days ago and there's no tracking yet."
                if mention_items else f"Any update on order {order_id}? The tracking page hasn't changed in a week.")
    elif kind == "address_change":
        new_address = fake.address()
        body = f"I moved last week. Please ship order {order_id} ({it}) to my new address: {new_address}"
    else:
        pay = pick(rng, [f"my card {fake.card()}", f"my Visa ending in {rng.randint(1000, 9999)}",
                         f"the account {fake.iban()}"])
        body = f"I returned {it} from order {order_id} two weeks ago and still haven't been refunded to {pay}."
    if not mention_items:
        items = []
    sig = name + (f"\n{phone}" if phone else "")
    greeting = pick(rng, ["Hello,", "Hi,", "Hi team,", "Good morning,", "To whom it may concern,"])
    closing = pick(rng, ["Thanks,", "Best,", "Kind regards,", "Cheers,", "Thank you,"])
    email_text = f"{greeting}\n\n{body}\n\n{closing}\n{sig}"
    email_out = email
    if rng.random() < 0.8:
        email_text = f"From: {name} <{email}>\nSubject: {pick(rng, ['Order', 'My order', 'Question about my order', order_id])}\n\n" + email_text
    elif rng.random() < 0.5:
        email_text += f"\n{email}"
    else:
        email_out = None
    user = pick(rng, ["Email:\n\n{e}", "Extract the order request from this customer email.\n\n---\n{e}\n---",
                      "{e}"]).format(e=email_text)
    answer = {"customer_name": name, "email": email_out, "phone": phone, "order_id": order_id, "request_type": kind,
              "items": [{"name": n, "quantity": q} for n, q in items], "new_address": new_address}
    request = {"model": "gpt-4o", "messages": [{"role": "system", "content": ORDER_SYSTEM}, {"role": "user", "content": user}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "order_request", "strict": True,
                                                                          "schema": ORDER_SCHEMA}},
               "temperature": 0}
    return {"request": request, "content": compact(answer)}


# --------------------------------------------------------------------------------------------
# task 4: lead extraction (json_schema)
# --------------------------------------------------------------------------------------------

LEAD_SCHEMA = {
    "type": "object",
    "properties": {
        "full_name": {"type": "string"},
        "company": {"type": "string"},
        "job_title": {"type": ["string", "null"]},
        "email": {"type": "string"},
        "phone": {"type": ["string", "null"]},
        "country": {"type": ["string", "null"]},
        "product_interest": {"type": "string", "enum": ["analytics", "crm", "payments", "support_desk"]},
        "team_size": {"type": ["integer", "null"], "minimum": 1},
        "wants_demo": {"type": "boolean"},
    },
    "required": ["full_name", "company", "job_title", "email", "phone", "country", "product_interest", "team_size",
                 "wants_demo"],
    "additionalProperties": False,
}
LEAD_PRODUCTS = {"analytics": ["Helix Analytics", "your analytics product", "the dashboards product"],
                 "crm": ["Helix CRM", "your CRM", "the sales pipeline tool"],
                 "payments": ["Helix Pay", "your payments API", "online payments"],
                 "support_desk": ["Helix Desk", "your helpdesk", "the support ticketing tool"]}
COMPANIES = ["Brightline Logistics", "Nordvik Foods", "Quanta Health", "Atlas Robotics", "Bluefin Capital",
             "Crescent Dental Group", "Verde Energy", "Lumio Learning", "Orbital Games", "Kestrel Insurance",
             "Solace Hotels", "Tandem Bikes", "Fjord Media", "Sable & Finch", "Ironwood Legal", "Pebble Pet Supply"]
TITLES = ["Head of Operations", "CTO", "VP Sales", "Customer Success Manager", "Founder", "IT Director",
          "Finance Manager", "Product Lead"]
COUNTRIES = ["Germany", "United States", "France", "Spain", "Netherlands", "United Kingdom", "Canada", "Sweden",
             "Brazil", "India"]


def gen_lead_extraction(rng: random.Random, fake: Fake, ts: float) -> dict:
    first, last = fake.name()
    company = pick(rng, COMPANIES)
    domain = ascii_fold(company.split()[0]).lower() + rng.choice([".com", ".io", ".co", ".de"])
    email = fake.email(first, last, domain=domain)
    title = pick(rng, TITLES) if rng.random() < 0.7 else None
    phone = fake.phone() if rng.random() < 0.5 else None
    country = pick(rng, COUNTRIES) if rng.random() < 0.65 else None
    interest = pick(rng, list(LEAD_PRODUCTS))
    team = rng.choice([5, 8, 12, 25, 40, 60, 120, 300, 1500]) if rng.random() < 0.6 else None
    demo = rng.random() < 0.5
    product = pick(rng, LEAD_PRODUCTS[interest])
    ask = pick(rng, ["Could we book a demo next week?", "We'd like to schedule a demo.", "Can someone give us a live demo?"]) if demo \
        else pick(rng, ["Please send pricing information.", "Could you share documentation and pricing?",
                        "Just looking for a price list for now."])
    if rng.random() < 0.5:  # website form dump
        lines = [f"Name: {first} {last}", f"Company: {company}", f"Email: {email}"]
        if title:
            lines.append(f"Job title: {title}")
        if phone:
            lines.append(f"Phone: {phone}")
        if country:
            lines.append(f"Country: {country}")
        if team:
            lines.append(f"Team size: {team}")
        lines.append(f"Message: We're evaluating {product}. {ask}")
        text = "New contact form submission\n" + "\n".join(lines)
    else:
        team_txt = f" We're a team of about {team} people" + (f" based in {country}." if country else ".") if team else \
            (f" We're based in {country}." if country else "")
        sig = "\n".join(x for x in [f"{first} {last}", title and f"{title}, {company}" or company, phone, email] if x)
        text = (f"Subject: {pick(rng, ['Enquiry', 'Interested in ' + product, 'Pricing question'])}\n\n"
                f"{pick(rng, ['Hello,', 'Hi there,', 'Good afternoon,'])}\n\nI'm reaching out from {company} about {product}."
                f"{team_txt} {ask}\n\n{pick(rng, ['Best,', 'Regards,', 'Thanks,'])}\n{sig}")
    answer = {"full_name": f"{first} {last}", "company": company, "job_title": title, "email": email, "phone": phone,
              "country": country, "product_interest": interest, "team_size": team, "wants_demo": demo}
    system = ("You are a lead-capture assistant for Helix's sales team. Extract the lead from the inbound message "
              "into the schema. Copy values exactly as written; use null when a value is missing. product_interest: "
              "analytics (Helix Analytics, dashboards), crm (Helix CRM, sales pipeline), payments (Helix Pay, payments "
              "API), support_desk (Helix Desk, helpdesk/ticketing). wants_demo is true only if they ask for a demo.")
    user = pick(rng, ["Inbound lead:\n{t}", "{t}", "Extract the lead from this message:\n\n{t}"]).format(t=text)
    request = {"model": "gpt-4o", "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "sales_lead", "strict": True,
                                                                          "schema": LEAD_SCHEMA}},
               "temperature": 0}
    return {"request": request, "content": compact(answer)}


# --------------------------------------------------------------------------------------------
# task 5: policy FAQ (short free text)
# --------------------------------------------------------------------------------------------

STORES = ["Northwind Outfitters", "Bluebird Home", "Kestrel Electronics", "Maple & Moss", "Driftwood Cycles",
          "Lumen Beauty", "Harbor Books", "Pine Peak Gear"]
FAQ_FALLBACK = "I'm sorry, the policy doesn't cover that. Please contact our support team for help."
FAQ_SYSTEM = ("You answer customer questions for an online store using ONLY the policy excerpt provided. Answer in one "
              "or two short, friendly sentences. If the excerpt does not answer the question, reply exactly: \""
              + FAQ_FALLBACK + "\"")


def store_policy(rng: random.Random, store: str) -> dict:
    cur = rng.choice(["$", "€", "£"])
    return {
        "store": store, "cur": cur,
        "return_days": rng.choice([14, 30, 45, 60, 90]),
        "refund_days": rng.choice([3, 5, 7, 10]),
        "restock": rng.choice([0, 0, 10, 15]),
        "free_ship": rng.choice([35, 50, 75, 100]),
        "std_days": rng.choice(["2-4", "3-5", "5-7"]),
        "express_fee": rng.choice([9.95, 12, 15, 19.5]),
        "express_days": rng.choice(["1", "1-2", "2"]),
        "intl": rng.choice([None, 25, 40]),
        "warranty": rng.choice([12, 24, 36]),
        "price_match": rng.choice([None, 7, 14]),
        "final_sale": rng.choice(["gift cards, earrings and swimwear", "clearance items and gift cards",
                                  "personalised items and gift cards", "opened software and gift cards"]),
        "hours": rng.choice(["Monday to Friday, 9am-6pm CET", "every day, 8am-8pm ET", "weekdays 9:00-17:30 GMT"]),
    }


def policy_sections(p: dict) -> dict[str, str]:
    c = p["cur"]
    return {
        "returns": f"Returns: Unworn, unused items can be returned within {p['return_days']} days of delivery. "
                   + (f"A {p['restock']}% restocking fee applies to opened electronics. " if p["restock"] else "There is no restocking fee. ")
                   + f"Final-sale items ({p['final_sale']}) cannot be returned.",
        "refunds": f"Refunds: Once we receive your return, refunds are issued to the original payment method within "
                   f"{p['refund_days']} business days.",
        "shipping": f"Shipping: Standard shipping takes {p['std_days']} business days and is free on orders over {c}{p['free_ship']}. "
                    f"Express shipping costs {c}{money_text(p['express_fee'])} and arrives in {p['express_days']} business day"
                    f"{'' if p['express_days'] == '1' else 's'}.",
        "international": (f"International: We ship to over {p['intl']} countries; duties and taxes are paid by the recipient."
                          if p["intl"] else "International: We currently ship only within the country."),
        "warranty": f"Warranty: All products carry a {p['warranty']}-month warranty against manufacturing defects.",
        "price_match": (f"Price match: If our price drops within {p['price_match']} days of your purchase, we refund the difference."
                        if p["price_match"] else "Price match: We do not offer price matching or price adjustments."),
        "support": f"Support: Our team is available {p['hours']} by chat and email.",
    }


FAQ_QUESTIONS = {
    "returns": (["How long do I have to return something?", "What's your return window?",
                 "Can I still return a jacket I got {n} days ago?"],
                lambda p, q: f"You can return unworn, unused items within {p['return_days']} days of delivery."
                if "{n}" not in q[0] else (f"Yes, returns are accepted within {p['return_days']} days of delivery, so {q[1]} days is fine as long as it's unworn and unused."
                                            if q[1] <= p["return_days"] else f"Unfortunately not: returns are only accepted within {p['return_days']} days of delivery.")),
    "refunds": (["When will I get my refund?", "How long do refunds take once you get the return?"],
                lambda p, q: f"Refunds go back to your original payment method within {p['refund_days']} business days of us receiving your return."),
    "shipping_free": (["Is shipping free?", "How much do I need to spend for free delivery?"],
                      lambda p, q: f"Standard shipping is free on orders over {p['cur']}{p['free_ship']}."),
    "shipping_express": (["How much is express shipping?", "Can I get my order faster? What does it cost?"],
                         lambda p, q: f"Yes, express shipping costs {p['cur']}{money_text(p['express_fee'])} and arrives in "
                                      f"{p['express_days']} business day{'' if p['express_days'] == '1' else 's'}."),
    "international": (["Do you ship internationally?", "Can you deliver outside the country?"],
                      lambda p, q: (f"Yes, we ship to over {p['intl']} countries; duties and taxes are paid by the recipient."
                                    if p["intl"] else "Sorry, we currently ship only within the country.")),
    "warranty": (["Is there a warranty?", "My item broke after a few months, is it covered?"],
                 lambda p, q: (f"If it's a manufacturing defect, yes: all products carry a {p['warranty']}-month warranty."
                               if q[0].startswith("My item") else f"Yes, all products have a {p['warranty']}-month warranty against manufacturing defects.")),
    "price_match": (["The price dropped right after I bought it, can I get the difference back?", "Do you price match?"],
                    lambda p, q: (f"Yes, if our price drops within {p['price_match']} days of your purchase, we'll refund the difference."
                                  if p["price_match"] else "Sorry, we don't offer price matching or price adjustments.")),
    "final_sale": (["Can I return a gift card?", "Which items can't be returned?"],
                   lambda p, q: (f"No, gift cards are final-sale items ({p['final_sale']}) and can't be returned."
                                 if "gift card" in q[0] else f"Final-sale items ({p['final_sale']}) can't be returned.")),
    "support": (["When is customer service open?", "What are your support hours?"],
                lambda p, q: f"Our support team is available {p['hours']} by chat and email."),
}
FAQ_SECTION_OF = {"returns": "returns", "refunds": "refunds", "shipping_free": "shipping", "shipping_express": "shipping",
                  "international": "international", "warranty": "warranty", "price_match": "price_match",
                  "final_sale": "returns", "support": "support"}
FAQ_UNANSWERABLE = ["Do you offer a student discount?", "Can I pick up my order in a store?",
                    "Do you have a loyalty program?", "Can I pay in instalments?", "Do you sell gift wrapping?"]


def gen_policy_faq(rng: random.Random, fake: Fake, ts: float, policies: dict) -> dict:
    store = pick(rng, STORES)
    p = policies[store]
    sections = policy_sections(p)
    if rng.random() < 0.1:
        question, answer = pick(rng, FAQ_UNANSWERABLE), FAQ_FALLBACK
        keys = rng.sample(list(sections), rng.randint(2, 4))
    else:
        topic = pick(rng, list(FAQ_QUESTIONS))
        phrasings, answer_fn = FAQ_QUESTIONS[topic]
        q = pick(rng, phrasings)
        n = rng.randint(5, 100)
        question = q.replace("{n}", str(n))
        answer = answer_fn(p, (q, n))
        needed = FAQ_SECTION_OF[topic]
        others = [k for k in sections if k != needed]
        keys = [needed] + rng.sample(others, rng.randint(1, 3))
        rng.shuffle(keys)
    excerpt = f"{p['store']} customer policy (excerpt)\n\n" + "\n\n".join(sections[k] for k in keys)
    if rng.random() < 0.4:
        first, last = fake.name()
        question = pick(rng, [f"Hi, this is {first} {last} ({fake.email(first, last)}). {question}",
                              f"{question} My order number is {rng.randint(100000, 999999)}.",
                              f"Hello! {question} Thanks, {first}"])
    user = pick(rng, ["Policy:\n\"\"\"\n{x}\n\"\"\"\n\nCustomer question: {q}",
                      "<policy>\n{x}\n</policy>\n\nQuestion: {q}",
                      "Use this policy to answer the customer.\n\n{x}\n\nCustomer: {q}"]).format(x=excerpt, q=question)
    request = {"model": "gpt-4o", "messages": [{"role": "system", "content": FAQ_SYSTEM}, {"role": "user", "content": user}],
               "temperature": 0.3, "max_tokens": 150}
    return {"request": request, "content": answer}


# --------------------------------------------------------------------------------------------
# task 6: incident summaries
# --------------------------------------------------------------------------------------------

SERVICES = ["checkout-api", "auth-service", "search-indexer", "payments-gateway", "notification-worker",
            "inventory-sync", "mobile-bff", "reporting-etl", "image-resizer", "billing-scheduler"]
REGIONS = ["eu-west-1", "us-east-1", "us-west-2", "ap-southeast-1", "eu-central-1"]
CAUSES = [
    ("an expired TLS certificate on the internal load balancer",
     "The TLS certificate on the internal load balancer had expired, so upstream health checks failed.",
     "renewing and redeploying the certificate", "Renewed the certificate and redeployed the load balancer config",
     ["automate certificate renewal", "alert 30 days before any certificate expires"]),
    ("a configuration push that shrank the database connection pool",
     "A configuration push reduced the database connection pool from 50 to 5, and requests queued until they timed out.",
     "rolling back the configuration change", "Rolled back the configuration change",
     ["add validation for pool-size changes", "require a canary for config pushes"]),
    ("a memory leak introduced in release {ver}",
     "Release {ver} introduced a memory leak in the request cache; pods were OOM-killed in a loop.",
     "rolling back to the previous release", "Rolled back to the previous release",
     ["add a memory soak test to CI", "set tighter memory alerts on the pods"]),
    ("a DNS record deleted during a cleanup",
     "A DNS record for the payment provider endpoint was deleted during a cleanup of stale records.",
     "restoring the DNS record", "Restored the DNS record from the zone backup",
     ["protect production DNS records from bulk deletion", "add a synthetic check for the provider endpoint"]),
    ("a full disk on the primary logging host",
     "The primary logging host ran out of disk space and the service blocked on log writes.",
     "rotating logs and expanding the volume", "Rotated logs and expanded the volume by 500 GB",
     ["alert at 80% disk usage", "make log writes non-blocking"]),
    ("an overly strict rate limit on the API gateway",
     "A new API gateway rule applied a limit of 10 requests per second per customer instead of per endpoint.",
     "reverting the rate-limit rule", "Reverted the rate-limit rule",
     ["review rate-limit changes with load tests", "document the rule format"]),
    ("an outage at the upstream SMS provider",
     "The upstream SMS provider had a regional outage; our retries amplified the backlog.",
     "failing over to the secondary provider", "Failed over to the secondary SMS provider",
     ["automate provider failover", "cap retries with exponential backoff"]),
    ("a database migration that locked the orders table",
     "A schema migration took an exclusive lock on the orders table during peak traffic.",
     "killing the migration and rescheduling it off-peak", "Killed the migration and rescheduled it off-peak",
     ["run large migrations online", "block migrations during peak hours"]),
    ("a bad feature-flag rollout",
     "A feature flag enabling an unfinished ranking model was rolled out to 100% of traffic instead of 5%.",
     "disabling the feature flag", "Disabled the feature flag",
     ["require two approvals for flag rollouts above 10%", "add error-rate guards to flag rollouts"]),
]


def gen_incident_summary(rng: random.Random, fake: Fake, ts: float) -> dict:
    now = dt.datetime.fromtimestamp(ts, dt.UTC)
    start = now - dt.timedelta(hours=rng.randint(2, 60), minutes=rng.randint(0, 59))
    duration = rng.choice([12, 18, 23, 31, 38, 47, 55, 64, 82, 95, 130])
    end = start + dt.timedelta(minutes=duration)
    service = pick(rng, SERVICES)
    region = pick(rng, REGIONS)
    sev = rng.choice(["SEV1", "SEV2", "SEV2", "SEV3"])
    pct = rng.choice([3, 7, 12, 18, 25, 40, 65, 100])
    customers = rng.choice([140, 380, 920, 1240, 2600, 4800, 12000])
    ver = f"v{rng.randint(2, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
    short, detail, mit_short, mit_detail, actions = CAUSES[rng.randrange(len(CAUSES))]
    short, detail = short.format(ver=ver), detail.format(ver=ver)
    ic, oncall = fake.name(), fake.name()
    owners = [fake.full_name() for _ in actions]
    host = fake.ip()
    t = lambda m: (start + dt.timedelta(minutes=m)).strftime("%H:%M")
    detect = rng.choice(["alert", "customers"])
    timeline = [f"{t(0)} " + (f"Alert \"HighErrorRate {service}\" fired in {region}." if detect == "alert"
                              else f"Support escalated several customer reports of errors from {service}."),
                f"{t(min(4, duration // 4))} {oncall[0]} {oncall[1]} acknowledged the page and started investigating host {host}.",
                f"{t(duration // 2)} Identified the cause: {detail[0].lower() + detail[1:]}",
                f"{t(duration - 3)} {mit_detail}.",
                f"{t(duration)} Error rates back to baseline; incident resolved."]
    date_txt = f"{MONTHS[start.month - 1]} {start.day}"
    impact = f"About {pct}% of {service} requests in {region} failed for {duration} minutes; roughly {customers:,} customers were affected."
    if rng.random() < 0.5:
        report = (f"# INC-{rng.randint(1000, 9999)}: {service} {rng.choice(['outage', 'degradation', 'errors'])}\n"
                  f"Severity: {sev}\nIncident commander: {ic[0]} {ic[1]} ({fake.email(*ic)})\n"
                  f"Start: {start.strftime('%Y-%m-%d %H:%M')} UTC\nEnd: {end.strftime('%Y-%m-%d %H:%M')} UTC\n\n"
                  f"## Timeline\n" + "\n".join(f"- {x}" for x in timeline) + f"\n\n## Impact\n{impact}\n\n"
                  f"## Root cause\n{detail}\n\n## Follow-up actions\n"
                  + "\n".join(f"- [ ] {a[0].upper() + a[1:]} (owner: {o})" for a, o in zip(actions, owners)))
    else:
        report = (f"Postmortem - {service} ({sev}), {start.strftime('%Y-%m-%d')}\n"
                  f"Written by {ic[0]} {ic[1]}. On-call: {oncall[0]} {oncall[1]}, {fake.phone()}.\n\n"
                  f"What happened: {impact} {detail}\n\nTimeline (UTC):\n" + "\n".join(timeline)
                  + "\n\nAction items: " + "; ".join(f"{a} ({o})" for a, o in zip(actions, owners)) + ".")
    s1 = pick(rng, [f"On {date_txt}, {service} had a {duration}-minute {sev} incident in which about {pct}% of requests in {region} failed, affecting roughly {customers:,} customers.",
                    f"{service} was degraded for {duration} minutes on {date_txt} ({sev}): about {pct}% of requests in {region} failed and roughly {customers:,} customers were affected."])
    s2 = f"The root cause was {short}, and the team mitigated it by {mit_short}."
    s3 = f"Follow-ups are to {actions[0]} and {actions[1]}."
    summary = " ".join([s1, s2] + ([s3] if rng.random() < 0.7 else []))
    user = pick(rng, ["Summarise this incident report in 2-3 sentences for the weekly reliability digest:\n\n{r}",
                      "TL;DR of this postmortem, max 3 sentences:\n\n{r}", "{r}"]).format(r=report)
    system = ("You are the ops assistant of the platform team. Summarise incident reports in two or three plain "
              "sentences: when and what broke, the impact, the root cause and mitigation, and the follow-ups if any. "
              "No bullet points, no markdown.")
    request = {"model": "gpt-4o", "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
               "temperature": 0.2, "max_tokens": 200}
    return {"request": request, "content": summary}


# --------------------------------------------------------------------------------------------
# task 7: UI string translation (from a hand-written parallel phrase bank)
# --------------------------------------------------------------------------------------------

# (English, French, Spanish, German); placeholders in braces stay unchanged
PHRASES = [
    ("Save changes", "Enregistrer les modifications", "Guardar cambios", "Änderungen speichern"),
    ("Cancel", "Annuler", "Cancelar", "Abbrechen"),
    ("Delete account", "Supprimer le compte", "Eliminar cuenta", "Konto löschen"),
    ("Are you sure you want to delete this file?", "Voulez-vous vraiment supprimer ce fichier ?",
     "¿Seguro que quieres eliminar este archivo?", "Möchten Sie diese Datei wirklich löschen?"),
    ("Add to cart", "Ajouter au panier", "Añadir al carrito", "In den Warenkorb"),
    ("Proceed to checkout", "Passer la commande", "Tramitar pedido", "Zur Kasse gehen"),
    ("Your order has been shipped.", "Votre commande a été expédiée.", "Tu pedido ha sido enviado.",
     "Ihre Bestellung wurde versandt."),
    ("Forgot your password?", "Mot de passe oublié ?", "¿Has olvidado tu contraseña?", "Passwort vergessen?"),
    ("Sign in", "Se connecter", "Iniciar sesión", "Anmelden"),
    ("Sign out", "Se déconnecter", "Cerrar sesión", "Abmelden"),
    ("Create an account", "Créer un compte", "Crear una cuenta", "Konto erstellen"),
    ("Welcome back, {name}!", "Bon retour, {name} !", "¡Hola de nuevo, {name}!", "Willkommen zurück, {name}!"),
    ("You have {count} unread messages", "Vous avez {count} messages non lus", "Tienes {count} mensajes sin leer",
     "Sie haben {count} ungelesene Nachrichten"),
    ("Free shipping on orders over {amount}", "Livraison gratuite dès {amount} d'achat",
     "Envío gratis en pedidos superiores a {amount}", "Kostenloser Versand ab {amount} Bestellwert"),
    ("Search", "Rechercher", "Buscar", "Suchen"),
    ("No results found", "Aucun résultat trouvé", "No se han encontrado resultados", "Keine Ergebnisse gefunden"),
    ("Settings", "Paramètres", "Configuración", "Einstellungen"),
    ("Notifications", "Notifications", "Notificaciones", "Benachrichtigungen"),
    ("Change password", "Modifier le mot de passe", "Cambiar contraseña", "Passwort ändern"),
    ("Payment method", "Moyen de paiement", "Método de pago", "Zahlungsmethode"),
    ("Your payment was declined.", "Votre paiement a été refusé.", "Tu pago ha sido rechazado.",
     "Ihre Zahlung wurde abgelehnt."),
    ("Try again", "Réessayer", "Volver a intentarlo", "Erneut versuchen"),
    ("Something went wrong. Please try again later.", "Une erreur s'est produite. Veuillez réessayer plus tard.",
     "Algo ha salido mal. Inténtalo de nuevo más tarde.", "Etwas ist schiefgelaufen. Bitte versuchen Sie es später erneut."),
    ("Order summary", "Récapitulatif de la commande", "Resumen del pedido", "Bestellübersicht"),
    ("Shipping address", "Adresse de livraison", "Dirección de envío", "Lieferadresse"),
    ("Billing address", "Adresse de facturation", "Dirección de facturación", "Rechnungsadresse"),
    ("Track your package", "Suivre votre colis", "Sigue tu paquete", "Sendung verfolgen"),
    ("Estimated delivery: {date}", "Livraison estimée : {date}", "Entrega estimada: {date}",
     "Voraussichtliche Lieferung: {date}"),
    ("Out of stock", "En rupture de stock", "Agotado", "Nicht vorrätig"),
    ("Only {count} left in stock", "Plus que {count} en stock", "Solo quedan {count} en stock", "Nur noch {count} auf Lager"),
    ("Apply coupon", "Appliquer le code promo", "Aplicar cupón", "Gutschein einlösen"),
    ("Invalid coupon code", "Code promo invalide", "Código de cupón no válido", "Ungültiger Gutscheincode"),
    ("Continue shopping", "Continuer mes achats", "Seguir comprando", "Weiter einkaufen"),
    ("Your cart is empty", "Votre panier est vide", "Tu carrito está vacío", "Ihr Warenkorb ist leer"),
    ("Remove", "Supprimer", "Eliminar", "Entfernen"),
    ("Edit profile", "Modifier le profil", "Editar perfil", "Profil bearbeiten"),
    ("Upload a photo", "Importer une photo", "Subir una foto", "Foto hochladen"),
    ("File size must be less than {size} MB", "La taille du fichier doit être inférieure à {size} Mo",
     "El archivo debe ocupar menos de {size} MB", "Die Datei muss kleiner als {size} MB sein"),
    ("Download invoice", "Télécharger la facture", "Descargar factura", "Rechnung herunterladen"),
    ("Contact support", "Contacter l'assistance", "Contactar con soporte", "Support kontaktieren"),
    ("Terms of service", "Conditions d'utilisation", "Términos del servicio", "Nutzungsbedingungen"),
    ("Privacy policy", "Politique de confidentialité", "Política de privacidad", "Datenschutzerklärung"),
    ("I agree to the terms and conditions", "J'accepte les conditions générales", "Acepto los términos y condiciones",
     "Ich akzeptiere die Allgemeinen Geschäftsbedingungen"),
    ("Subscribe to our newsletter", "Abonnez-vous à notre newsletter", "Suscríbete a nuestro boletín",
     "Abonnieren Sie unseren Newsletter"),
    ("Enter your email address", "Saisissez votre adresse e-mail", "Introduce tu dirección de correo electrónico",
     "Geben Sie Ihre E-Mail-Adresse ein"),
    ("This field is required", "Ce champ est obligatoire", "Este campo es obligatorio", "Dieses Feld ist erforderlich"),
    ("Passwords do not match", "Les mots de passe ne correspondent pas", "Las contraseñas no coinciden",
     "Die Passwörter stimmen nicht überein"),
    ("Your session has expired. Please sign in again.", "Votre session a expiré. Veuillez vous reconnecter.",
     "Tu sesión ha caducado. Vuelve a iniciar sesión.", "Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an."),
    ("Last updated: {date}", "Dernière mise à jour : {date}", "Última actualización: {date}", "Zuletzt aktualisiert: {date}"),
    ("Show more", "Afficher plus", "Mostrar más", "Mehr anzeigen"),
    ("Show less", "Afficher moins", "Mostrar menos", "Weniger anzeigen"),
    ("Back to top", "Retour en haut", "Volver arriba", "Nach oben"),
    ("Loading…", "Chargement…", "Cargando…", "Wird geladen…"),
    ("Dark mode", "Mode sombre", "Modo oscuro", "Dunkelmodus"),
    ("Language", "Langue", "Idioma", "Sprache"),
    ("Help center", "Centre d'aide", "Centro de ayuda", "Hilfe-Center"),
    ("Write a review", "Écrire un avis", "Escribir una reseña", "Bewertung schreiben"),
    ("{count} reviews", "{count} avis", "{count} reseñas", "{count} Bewertungen"),
    ("Thank you for your order!", "Merci pour votre commande !", "¡Gracias por tu pedido!", "Vielen Dank für Ihre Bestellung!"),
    ("We've sent a confirmation email to {email}.", "Nous avons envoyé un e-mail de confirmation à {email}.",
     "Hemos enviado un correo de confirmación a {email}.", "Wir haben eine Bestätigungs-E-Mail an {email} gesendet."),
    ("Return policy", "Politique de retour", "Política de devoluciones", "Rückgaberichtlinie"),
    ("Request a refund", "Demander un remboursement", "Solicitar un reembolso", "Rückerstattung anfordern"),
    ("Your refund has been processed.", "Votre remboursement a été effectué.", "Tu reembolso se ha procesado.",
     "Ihre Rückerstattung wurde bearbeitet."),
    ("Two-factor authentication", "Authentification à deux facteurs", "Autenticación en dos pasos",
     "Zwei-Faktor-Authentifizierung"),
    ("Enter the 6-digit code we sent to your phone", "Saisissez le code à 6 chiffres envoyé sur votre téléphone",
     "Introduce el código de 6 dígitos que te hemos enviado al teléfono",
     "Geben Sie den 6-stelligen Code ein, den wir an Ihr Telefon gesendet haben"),
    ("Resend code", "Renvoyer le code", "Reenviar código", "Code erneut senden"),
    ("Update available", "Mise à jour disponible", "Actualización disponible", "Update verfügbar"),
    ("Restart now", "Redémarrer maintenant", "Reiniciar ahora", "Jetzt neu starten"),
    ("Remind me later", "Me le rappeler plus tard", "Recordármelo más tarde", "Später erinnern"),
    ("Invite your team", "Invitez votre équipe", "Invita a tu equipo", "Laden Sie Ihr Team ein"),
    ("Upgrade to Pro", "Passer à la version Pro", "Pasar a Pro", "Auf Pro upgraden"),
    ("Your free trial ends in {count} days", "Votre essai gratuit se termine dans {count} jours",
     "Tu prueba gratuita termina en {count} días", "Ihre kostenlose Testversion endet in {count} Tagen"),
    ("Manage subscription", "Gérer l'abonnement", "Gestionar suscripción", "Abonnement verwalten"),
    ("Copy link", "Copier le lien", "Copiar enlace", "Link kopieren"),
    ("Link copied to clipboard", "Lien copié dans le presse-papiers", "Enlace copiado al portapapeles",
     "Link in die Zwischenablage kopiert"),
    ("Share", "Partager", "Compartir", "Teilen"),
    ("Size guide", "Guide des tailles", "Guía de tallas", "Größentabelle"),
    ("Select a size", "Sélectionnez une taille", "Selecciona una talla", "Größe auswählen"),
    ("Add to wishlist", "Ajouter à la liste de souhaits", "Añadir a la lista de deseos", "Zur Wunschliste hinzufügen"),
    ("Delivery in 2–4 business days", "Livraison en 2 à 4 jours ouvrés", "Entrega en 2-4 días laborables",
     "Lieferung in 2–4 Werktagen"),
]
LANGS = [("French", 1), ("Spanish", 2), ("German", 3)]


def gen_ui_translation(rng: random.Random, fake: Fake, ts: float) -> dict:
    lang, col = weighted(rng, [(LANGS[0], 0.45), (LANGS[1], 0.35), (LANGS[2], 0.2)])
    n = rng.choice([1, 1, 1, 2, 3, 4, 5])
    rows = rng.sample(PHRASES, n)
    register = {1: "Address the user as vous.", 2: "Address the user informally (tú).", 3: "Address the user as Sie."}[col]
    system = (f"You are a professional software localizer. Translate English user-interface strings into {lang}. "
              "Keep placeholders in curly braces (like {name}) unchanged and keep the punctuation style. "
              f"{register} Return only the translation, one line per input line, in the same order.")
    if n == 1:
        user = pick(rng, ["Translate: {s}", "{s}", "String to translate ({lang}):\n{s}"]).format(s=rows[0][0], lang=lang)
    else:
        lines = "\n".join(r[0] for r in rows)
        user = pick(rng, ["Translate each line:\n{l}", "Strings for the {lang} release:\n{l}", "{l}"]).format(l=lines, lang=lang)
    request = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
               "temperature": 0}
    return {"request": request, "content": "\n".join(r[col] for r in rows)}


# --------------------------------------------------------------------------------------------
# open-ended one-off calls (stay on the big model)
# --------------------------------------------------------------------------------------------

TOPICS = ["urban beekeeping", "second-hand furniture", "language exchange", "plant-based snacks", "dog walking",
          "home energy audits", "vintage cameras", "board game cafés", "bike repair", "sleep tracking",
          "meal prep for nurses", "indie game localization", "ceramics classes", "EV charging at apartments",
          "rooftop gardens", "sign-language tutoring", "sustainable swimwear", "climbing gyms", "AI tutoring for kids",
          "local news podcasts", "repair cafés", "rental camping gear", "senior tech support", "cold brew coffee",
          "mushroom foraging tours", "small-batch hot sauce", "woodworking kits", "freelancer invoicing",
          "wedding photo albums", "remote team offsites"]
CONCEPT_PAIRS = [
    ("TCP", "UDP", "TCP sets up a connection and guarantees ordered, complete delivery with retransmissions; UDP just sends datagrams with no delivery or ordering guarantee, which makes it lighter and lower-latency (games, video calls, DNS)."),
    ("a Roth IRA", "a traditional IRA", "with a traditional IRA you usually deduct contributions now and pay income tax on withdrawals; with a Roth IRA you contribute after-tax money and qualified withdrawals in retirement are tax-free."),
    ("affect", "effect", "'affect' is usually the verb (the rain affected the game) and 'effect' the noun (the rain had an effect); 'effect' as a verb means to bring about (to effect change)."),
    ("weather", "climate", "weather is the state of the atmosphere on a given day; climate is the average pattern of weather in a place over decades."),
    ("a virus", "a bacterium", "bacteria are living single cells that can reproduce on their own and are treated with antibiotics; viruses are much smaller, need a host cell to replicate and are not affected by antibiotics."),
    ("stocks", "bonds", "a stock is a share of ownership in a company with uncertain returns; a bond is a loan to a company or government that pays fixed interest and is usually less volatile."),
    ("RAM", "storage", "RAM is fast, temporary working memory that is cleared when the computer turns off; storage (SSD or hard drive) is slower but keeps your files permanently."),
    ("latitude", "longitude", "latitude measures how far north or south of the equator you are (lines run east-west); longitude measures how far east or west of the Greenwich meridian (lines run pole to pole)."),
    ("a process", "a thread", "a process has its own memory space; threads live inside a process and share its memory, so they are cheaper to create but need synchronisation."),
    ("baking soda", "baking powder", "baking soda is pure sodium bicarbonate and needs an acid in the recipe (buttermilk, yoghurt) to rise; baking powder already contains the acid, so it works with neutral ingredients."),
    ("empathy", "sympathy", "sympathy is feeling sorry for someone; empathy is feeling with them, understanding their experience from their point of view."),
    ("HTTP", "HTTPS", "HTTPS is HTTP sent over an encrypted TLS connection, so nobody in between can read or alter the traffic, and the certificate proves which site you are talking to."),
    ("a crocodile", "an alligator", "alligators have a wide U-shaped snout and mostly live in fresh water in the US and China; crocodiles have a narrower V-shaped snout, show their lower teeth with the mouth closed and tolerate salt water."),
    ("machine learning", "statistics", "statistics focuses on inference: understanding relationships and quantifying uncertainty; machine learning focuses on prediction accuracy on new data, often with more flexible models."),
    ("ETFs", "mutual funds", "ETFs trade on an exchange throughout the day like stocks and are often cheaper and more tax-efficient; mutual funds are bought from the fund company at the end-of-day price."),
    ("git merge", "git rebase", "merge combines two branches with a merge commit and keeps history as it happened; rebase replays your commits on top of the other branch for a linear history, rewriting those commits."),
    ("a psychologist", "a psychiatrist", "a psychiatrist is a medical doctor who can diagnose and prescribe medication; a psychologist has a doctorate in psychology and focuses on assessment and talk therapy."),
    ("speed", "velocity", "speed is how fast something moves (a scalar); velocity is speed plus direction (a vector), so going around a track at constant speed still changes your velocity."),
    ("lager", "ale", "ales use top-fermenting yeast at warmer temperatures and taste fruitier; lagers use bottom-fermenting yeast at cool temperatures and taste cleaner and crisper."),
    ("a will", "a trust", "a will takes effect at death and usually goes through probate; a trust can take effect immediately, holds assets for beneficiaries and generally avoids probate."),
    ("mitosis", "meiosis", "mitosis makes two identical cells for growth and repair; meiosis makes four genetically different cells with half the chromosomes, used for eggs and sperm."),
    ("SQL", "NoSQL databases", "SQL databases store data in tables with a fixed schema and strong consistency; NoSQL databases (document, key-value, graph) trade some of that for flexible schemas and easier horizontal scaling."),
    ("an LLC", "a sole proprietorship", "a sole proprietorship is you doing business directly, with unlimited personal liability; an LLC is a separate legal entity that usually protects your personal assets from business debts."),
    ("fission", "fusion", "fission splits heavy nuclei like uranium and powers today's reactors; fusion joins light nuclei like hydrogen, powers the sun, and releases more energy with less long-lived waste but is much harder to sustain."),
]
CHILD_CONCEPTS = [
    ("why the sky is blue", "sunlight is made of all the colours mixed together. When it hits the air, the blue part bounces around much more than the red part, so blue light comes at us from every direction of the sky."),
    ("how vaccines work", "a vaccine shows your body a harmless 'wanted poster' of a germ. Your body's defenders practise on it, so if the real germ ever shows up they recognise it and beat it quickly."),
    ("what inflation is", "inflation is when prices slowly go up over time, so the same coin buys a bit less. A sweet that cost 10 cents when grandma was little might cost a dollar today."),
    ("how the internet works", "the internet is like a giant post office for computers. Your message is cut into tiny envelopes, each one finds its own way through lots of connected computers, and they're put back together at the other end."),
    ("why we have seasons", "the Earth is a little tilted. For part of the year your half leans towards the sun and gets more direct sunshine (summer), and later it leans away (winter)."),
    ("what DNA is", "DNA is like a recipe book inside every tiny part of your body. It has the instructions that decide things like your eye colour and how your body grows."),
    ("how airplanes stay up", "the wings are shaped and tilted so that air moving past them gets pushed downwards. When the wing pushes air down, the air pushes the plane up, as long as the engines keep it moving fast."),
    ("what a black hole is", "a black hole is a place where so much stuff is squeezed so tightly that its pull is super strong. Not even light can climb out, which is why it looks black."),
    ("how rainbows form", "raindrops act like tiny prisms. Sunlight goes into a drop, bends, bounces off the back and comes out split into its colours, and millions of drops together make the arc."),
    ("why the moon changes shape", "the moon doesn't really change shape. The sun always lights half of it, and as the moon travels around the Earth we see different amounts of that lit half."),
]
POEM_SUBJECTS = ["my cat who hates Mondays", "the last train home", "a lighthouse keeper's retirement",
                 "burnt toast", "the first snow in Lisbon", "a houseplant I keep forgetting to water",
                 "debugging at 3am", "my grandmother's garden", "a marathon I didn't finish", "autumn in Kyoto",
                 "a broken umbrella", "the smell of old books"]
POEM_STYLES = ["as a limerick", "in the style of a sea shanty", "as a haiku sequence", "in free verse",
               "as a sonnet", "with lots of alliteration", "in the voice of a noir detective"]
EMAIL_SITUATIONS = ["ask my landlord to fix the heating that's been broken for two weeks",
                    "tell my manager I need to move our 1:1 because of a dentist appointment",
                    "politely decline a wedding invitation from a colleague",
                    "ask my neighbour to keep their dog quiet at night",
                    "follow up on a job application I sent three weeks ago",
                    "ask a professor for an extension on my thesis chapter",
                    "complain to the council about potholes on my street",
                    "thank a mentor who helped me get promoted",
                    "ask for a refund from a gym that closed", "invite my team to a farewell lunch"]
CODE_SNIPPETS = [
    ("def average(xs):\n    return sum(xs) / len(xs)\n\nprint(average([]))", "ZeroDivisionError",
     "The list is empty, so `len(xs)` is 0. Guard against it, e.g. `return sum(xs) / len(xs) if xs else 0.0`, or raise a clear ValueError."),
    ("items = [1, 2, 3]\nfor i in range(len(items) + 1):\n    print(items[i])", "IndexError: list index out of range",
     "`range(len(items) + 1)` goes one past the end. Iterate directly: `for item in items: print(item)`."),
    ("def add_item(item, bucket=[]):\n    bucket.append(item)\n    return bucket", "the list keeps growing between calls",
     "The default list is created once and shared by every call. Use `bucket=None` and create a new list inside the function."),
    ("const total = prices.reduce((a, b) => a + b);", "TypeError: Reduce of empty array with no initial value",
     "Pass an initial value: `prices.reduce((a, b) => a + b, 0)` so an empty array returns 0."),
    ("SELECT name, COUNT(*) FROM orders;", "column \"orders.name\" must appear in the GROUP BY clause",
     "Add `GROUP BY name` so the count is computed per name."),
    ("with open('data.csv') as f:\n    rows = f.readlines()\nprint(rows[0].split(',')[3])", "IndexError on some files",
     "Some rows have fewer than four fields (or the file uses another delimiter). Use the csv module and check `len(row)` before indexing."),
    ("if (user.age = 18) { allow(); }", "everyone is allowed in",
     "`=` assigns instead of comparing, so the condition is always truthy. Use `===` (or `>=` if you mean at least 18)."),
    ("import pandas as pd\ndf = pd.read_csv('sales.csv')\ndf[df.region == 'EU']['total'] = 0", "SettingWithCopyWarning and nothing changes",
     "Chained indexing writes to a temporary copy. Use `df.loc[df.region == 'EU', 'total'] = 0`."),
]
ITINERARY_CITIES = ["Lisbon", "Kyoto", "Mexico City", "Edinburgh", "Istanbul", "Cape Town", "Copenhagen",
                    "Buenos Aires", "Hanoi", "Vienna", "Marrakech", "Seoul"]
INTERESTS = ["street food", "modern art", "hiking", "live music", "architecture", "vintage shopping",
             "history", "coffee", "photography", "kid-friendly activities"]
CAREER_MOVES = [("teaching", "UX research"), ("nursing", "health informatics"), ("accounting", "data analysis"),
                ("journalism", "content strategy"), ("retail management", "project management"),
                ("mechanical engineering", "software engineering"), ("law", "product management"),
                ("hospitality", "customer success"), ("graphic design", "frontend development")]
ETHICS_QUESTIONS = ["Is it ever okay to lie to protect someone's feelings?",
                    "Should self-driving cars prioritize passengers or pedestrians?",
                    "Do we have a moral obligation to future generations?",
                    "Is it ethical to eat meat if lab-grown alternatives exist?",
                    "Should companies be allowed to monitor employees' keystrokes?",
                    "Is it fair to judge historical figures by today's standards?"]
HISTORY_QUESTIONS = [
    ("Why did the Roman Empire split in two?", "the empire had become too large to govern from one place. After the crisis of the third century, Diocletian divided administration, and on Theodosius I's death in 395 it was split permanently between his sons, with the richer East centred on Constantinople."),
    ("What caused the 1929 stock market crash?", "stocks had been driven far above company earnings by speculation, much of it bought on margin with borrowed money. When prices started falling in October 1929, margin calls forced selling, which pushed prices down further in a panic."),
    ("Why did the Berlin Wall fall in 1989?", "East Germany was under heavy economic strain, mass protests were growing and thousands were fleeing via Hungary. Gorbachev would not send Soviet troops, and on 9 November a botched announcement about travel rules sent crowds to the checkpoints, where guards opened the gates."),
    ("How did the printing press change Europe?", "Gutenberg's press made books cheap and fast to copy. Literacy spread, ideas circulated widely and stayed consistent, which fuelled the Reformation, the Scientific Revolution and the rise of vernacular languages."),
    ("Why was the Silk Road so important?", "it linked China, Central Asia, the Middle East and Europe for centuries. Beyond silk and spices, it carried technologies, religions, ideas and, unfortunately, diseases such as the plague."),
    ("What led to the end of the Bronze Age?", "around 1200 BCE several connected shocks hit the eastern Mediterranean at once: drought and famine, earthquakes, invasions by the 'Sea Peoples' and the breakdown of the trade networks that supplied tin and copper."),
    ("Why did the Aztec Empire fall so quickly?", "Cortés had only a few hundred Spaniards, but he allied with tens of thousands of Tlaxcalans and other peoples who resented Aztec rule, and a smallpox epidemic devastated Tenochtitlan during the siege of 1521."),
    ("What started the First World War?", "the assassination of Archduke Franz Ferdinand in Sarajevo in June 1914 triggered it, but the alliance system, militarism, imperial rivalry and nationalism turned a regional crisis into a general war within weeks."),
]
ERRORS = [
    ("ModuleNotFoundError: No module named 'numpy'", "the Python you are running doesn't have numpy installed. Install it into that same interpreter with `python -m pip install numpy`, and check you activated the right virtual environment."),
    ("CORS policy: No 'Access-Control-Allow-Origin' header", "the browser blocked a request to another origin because the server didn't allow it. Fix it on the server: return `Access-Control-Allow-Origin` with your frontend's origin (and handle the OPTIONS preflight)."),
    ("fatal: refusing to merge unrelated histories", "the two branches share no common commit, typically a new local repo and a remote created with a README. If you really want to combine them, run `git pull origin main --allow-unrelated-histories` and resolve conflicts."),
    ("Permission denied (publickey)", "the server didn't accept any of your SSH keys. Check `ssh -T git@github.com`, make sure your public key is added to your account and that the agent has the key loaded (`ssh-add -l`)."),
    ("ERR_CONNECTION_REFUSED on localhost:3000", "nothing is listening on port 3000. Make sure the dev server is actually running and didn't crash, and that it listens on that port (and on localhost, not only inside a container)."),
    ("java.lang.OutOfMemoryError: Java heap space", "the JVM ran out of heap. Give it more with `-Xmx` (e.g. `-Xmx4g`), and if it keeps growing take a heap dump to look for a leak such as an unbounded cache or collection."),
    ("docker: Error response from daemon: port is already allocated", "another container or process already uses that host port. Find it with `docker ps` (or `lsof -i :PORT`), stop it, or map your container to a different host port with `-p 8081:80`."),
    ("npm ERR! ERESOLVE unable to resolve dependency tree", "two packages require incompatible peer-dependency versions. Align the versions if you can; otherwise `npm install --legacy-peer-deps` reproduces npm 6 behaviour."),
    ("Segmentation fault (core dumped)", "the program accessed memory it shouldn't, e.g. a null or dangling pointer or an out-of-bounds write. Rebuild with `-g -fsanitize=address` or run it under gdb to get the exact line."),
    ("SSL: CERTIFICATE_VERIFY_FAILED", "Python couldn't verify the server's certificate chain, usually because your CA certificates are missing or a corporate proxy re-signs traffic. Update `certifi`, or on macOS run 'Install Certificates.command'; don't just disable verification."),
]
GIFT_PEOPLE = ["my dad who loves fishing", "a coworker leaving for Japan", "my 10-year-old niece who likes science",
               "my partner who just started running", "a friend who has everything", "my grandma who loves puzzles",
               "a new neighbour", "my brother who's into home brewing", "a teacher at the end of the school year"]
BOOKS = ["The Martian", "Pride and Prejudice", "Sapiens", "The Night Circus", "Project Hail Mary", "Educated",
         "The Name of the Wind", "Atomic Habits", "Circe", "The Remains of the Day", "Dune", "Station Eleven"]
PETS = [("kitten", "grey and very shy"), ("puppy", "a golden retriever who steals socks"),
        ("rabbit", "black with one white ear"), ("parrot", "loud and loves whistling"),
        ("tortoise", "ancient-looking and slow"), ("hamster", "tiny and always eating"), ("goldfish", "orange and dramatic")]
EXCEL_TASKS = [
    ("sum column B only where column A says 'Paid'", '`=SUMIF(A:A, "Paid", B:B)`'),
    ("find the second largest value in D2:D200", "`=LARGE(D2:D200, 2)`"),
    ("count how many dates in column C fall on a weekend", "`=SUMPRODUCT(--(WEEKDAY(C2:C500, 2) > 5))` (ignore blanks with an extra `*(C2:C500<>\"\")`)"),
    ("look up a price from another sheet by product code", "`=XLOOKUP(A2, Prices!A:A, Prices!B:B, \"not found\")` (or `=VLOOKUP(A2, Prices!A:B, 2, FALSE)` in older versions)"),
    ("extract the domain from email addresses in column A", '`=MID(A2, FIND("@", A2) + 1, LEN(A2))`'),
    ("flag duplicate invoice numbers in column A", '`=IF(COUNTIF(A:A, A2) > 1, "duplicate", "")`, or use conditional formatting > Duplicate values'),
    ("calculate working days between two dates excluding holidays", "`=NETWORKDAYS(A2, B2, Holidays!A:A)`"),
]
RIDDLES = [("What has keys but can't open locks?", "A piano."),
           ("The more you take, the more you leave behind. What are they?", "Footsteps."),
           ("What gets wetter the more it dries?", "A towel."),
           ("I speak without a mouth and hear without ears. What am I?", "An echo."),
           ("What has a neck but no head?", "A bottle.")]
TERMS = [
    ("amortization", "paying off a loan in regular instalments, where each payment covers that period's interest plus part of the principal. Early payments are mostly interest; later ones mostly principal."),
    ("escrow", "a neutral third party holding money or documents until both sides have done what they promised. In a house purchase, your deposit sits in escrow until closing."),
    ("force majeure", "a clause that excuses a party from its obligations when something extraordinary and outside its control happens, such as a natural disaster or war, for as long as it lasts."),
    ("capital gains tax", "tax on the profit when you sell an asset for more than you paid. Buy shares for 1,000 and sell for 1,500, and the 500 gain is what gets taxed."),
    ("an indemnity clause", "a promise by one party to cover the other's losses if certain things go wrong, for example a supplier agreeing to pay your legal costs if its product infringes a patent."),
    ("a power of attorney", "a legal document that lets someone you trust act on your behalf, for example to manage your bank accounts if you are abroad or unable to."),
    ("vesting cliffs", "a waiting period before any of your equity vests. With a one-year cliff on a four-year schedule, you get nothing if you leave before 12 months, then 25% at once, then the rest monthly."),
    ("EBITDA", "earnings before interest, taxes, depreciation and amortization: a rough measure of a company's operating profit that ignores how it is financed and its accounting for assets."),
    ("a non-compete agreement", "a promise not to work for a competitor, or start a competing business, for a set time and area after you leave. Enforceability varies a lot by country and state."),
    ("compound interest", "interest earned on your interest. 1,000 at 5% a year becomes 1,050 after one year and 1,102.50 after two, because the second year's interest is on 1,050."),
]
RECIPE_INGREDIENTS = [["chickpeas", "spinach", "coconut milk"], ["leftover rice", "eggs", "frozen peas"],
                      ["sweet potatoes", "black beans", "feta"], ["salmon", "lemon", "asparagus"],
                      ["tofu", "broccoli", "peanut butter"], ["mushrooms", "barley", "thyme"],
                      ["zucchini", "ricotta", "pasta"], ["lentils", "carrots", "cumin"]]
GIT_TASKS = [
    ("undo my last commit but keep the changes", "`git reset --soft HEAD~1` undoes the commit and keeps your changes staged."),
    ("rename a branch that I already pushed", "`git branch -m old new`, then `git push origin -u new` and `git push origin --delete old`."),
    ("remove a file from the repo but keep it locally", "`git rm --cached path/to/file`, add it to `.gitignore`, then commit."),
    ("squash my last 4 commits", "`git rebase -i HEAD~4`, keep the first as `pick` and mark the other three `squash`; force-push with `--force-with-lease` only if nobody else uses the branch."),
    ("find which commit introduced a bug", "`git bisect start`, `git bisect bad`, `git bisect good <known-good-commit>`, then test each commit git checks out and mark it good or bad."),
    ("move uncommitted changes to a new branch", "`git switch -c new-branch`: uncommitted changes come with you, then commit them there."),
]


def oe_variants(rng: random.Random, fake: Fake) -> list:
    """A generator for each kind of one-off request: () -> (history, user_text, answer)."""
    r = rng

    def startup_names():
        topic = pick(r, TOPICS)
        words = [w.strip("-").capitalize() for w in topic.split()]
        stems = [words[0][:4], words[-1][:5], words[0][:3] + words[-1][:3].lower()]
        names = [stems[0] + "ly", stems[1] + "Hub", stems[2], "The " + words[-1] + " Co.", stems[1] + "wise"]
        q = pick(r, [f"Brainstorm some names for my startup about {topic}.",
                     f"I'm launching a small business around {topic}. Can you suggest 5 catchy names?",
                     f"Need a brand name for a {topic} company, something short and memorable. Ideas?"])
        a = "Here are a few directions:\n" + "\n".join(f"{i + 1}. **{n}**: {pick(r, ['friendly and easy to say', 'sounds established', 'short enough for a domain', 'playful', 'hints at the community angle'])}" for i, n in enumerate(names)) \
            + f"\n\nBefore you pick one, check domain and trademark availability, and say each out loud to someone who has never heard of {topic}."
        return [], q, a

    def explain_difference():
        a_, b_, diff = pick(r, CONCEPT_PAIRS)
        q = pick(r, [f"What's the difference between {a_} and {b_}?", f"Explain {a_} vs {b_} like I'm a beginner.",
                     f"I always mix up {a_} and {b_}. How do I tell them apart?", f"{a_[0].upper() + a_[1:]} or {b_}: which is which, and when does it matter?"])
        a = f"In short: {diff}\n\n" + pick(r, ["A good way to remember it is to picture one concrete situation where only one of them applies.",
                                                 "If you tell me what you need it for, I can say which one matters in your case.",
                                                 "They're related, which is why they get mixed up, but the distinction matters as soon as you make a decision that depends on it."])
        return [], q, a

    def poem():
        subject, style = pick(r, POEM_SUBJECTS), pick(r, POEM_STYLES)
        q = pick(r, [f"Write a short poem about {subject} {style}.", f"Can you write me a poem about {subject}? Make it {style.removeprefix('as ')}.",
                     f"Poem request: {subject}, {style}. Keep it under 12 lines."])
        words = subject.split()
        a = f"{words[-1].capitalize()} at dawn, and nothing quite the same,\n{' '.join(words[:3])} that no one thought to name,\nI hold the hour like a borrowed key,\nand let it turn, and let it set me free."
        return [], q, a

    def email_draft():
        sit = pick(r, EMAIL_SITUATIONS)
        first, last = fake.name()
        q = pick(r, [f"Help me write an email to {sit}.", f"Draft a polite but firm email to {sit}. My name is {first} {last}.",
                     f"I need to {sit}. Can you write the email? Keep it short."])
        a = f"Subject: A quick request\n\nHi,\n\nI hope you're well. I'm writing to {sit.split(' ', 1)[1] if sit.startswith('ask') else sit}. " \
            f"I'd really appreciate it if we could sort this out soon, and I'm happy to talk if that's easier.\n\nThanks so much,\n{first}"
        return [], q, a

    def debug_code():
        code, err, fix = pick(r, CODE_SNIPPETS)
        q = pick(r, [f"Why does this fail with {err}?\n\n```\n{code}\n```", f"My code is broken:\n```\n{code}\n```\nI get: {err}. Help?",
                     f"Can you spot the bug here? Symptom: {err}\n\n{code}"])
        return [], q, f"{fix}\n\nIf you share a bit more context I can suggest a test that would have caught it."

    def itinerary():
        city, days, interests = pick(r, ITINERARY_CITIES), r.randint(2, 7), r.sample(INTERESTS, 2)
        q = pick(r, [f"Plan a {days}-day trip to {city} for someone into {interests[0]} and {interests[1]}.",
                     f"We're going to {city} for {days} days in {pick(r, MONTHS)}. We love {interests[0]}. What should we do?",
                     f"Give me an itinerary for {city}, {days} days, focus on {interests[0]}, not too rushed."])
        a = f"Here's a relaxed {days}-day plan for {city}:\n" + "\n".join(
            f"**Day {d + 1}**: morning {pick(r, ['walk through the old town', 'market visit', 'museum', 'viewpoint hike'])}, afternoon {interests[d % 2]}, evening {pick(r, ['dinner in a local tavern', 'sunset drinks', 'a night market', 'a concert'])}."
            for d in range(days)) + "\n\nBook popular spots a few days ahead and leave one afternoon free."
        return [], q, a

    def recipe():
        ing = pick(r, RECIPE_INGREDIENTS)
        q = pick(r, [f"What can I cook with {', '.join(ing[:-1])} and {ing[-1]}?", f"I have {', '.join(ing)} in the fridge. Dinner ideas for two?",
                     f"Quick weeknight recipe using {ing[0]} and {ing[1]}, please. I also have {ing[2]}."])
        a = f"Try a one-pan dish: sauté aromatics, add the {ing[0]}, then the {ing[1]}, and finish with the {ing[2]}. Season well, simmer 10-15 minutes and serve with bread or rice. Variations: add chilli for heat or lemon for brightness."
        return [], q, a

    def career():
        frm, to = pick(r, CAREER_MOVES)
        yrs = r.randint(3, 15)
        q = pick(r, [f"I've worked in {frm} for {yrs} years and want to move into {to}. Where do I start?",
                     f"Is it realistic to switch from {frm} to {to} at {r.randint(28, 50)}?",
                     f"Career change advice: {frm} -> {to}. What skills transfer?"])
        a = (f"Very doable. Your {yrs} years in {frm} give you transferable strengths: communication, working under pressure and domain knowledge.\n\n"
             f"1. Map the core skills of {to} and mark which you already use.\n2. Fill gaps with one focused course and a small portfolio project.\n"
             f"3. Talk to three people already in {to}.\n4. Look for hybrid roles that value a {frm} background.")
        return [], q, a

    def eli5():
        c, expl = pick(r, CHILD_CONCEPTS)
        age = r.randint(5, 11)
        q = pick(r, [f"Explain {c} to a {age}-year-old.", f"My kid ({age}) asked me {c}. How do I explain it simply?",
                     f"ELI5: {c}"])
        return [], q, f"Here's a version for a {age}-year-old: {expl}\n\nYou can finish by asking them to explain it back in their own words."

    def gift():
        who, budget = pick(r, GIFT_PEOPLE), r.choice([20, 30, 50, 75, 100, 150])
        q = pick(r, [f"Gift ideas for {who}? Budget around ${budget}.", f"What should I get {who}? Under {budget} dollars.",
                     f"Need a present for {who}, max ${budget}, ideally something they'd actually use."])
        return [], q, f"A few ideas around ${budget}:\n- something practical tied to their hobby\n- an experience (a class or a tour)\n- a personalised item\n- a book or subscription related to what they love\nA handwritten note makes any of these better."

    def rewrite():
        text, tone, out = pick(r, [
            ("hey so the meeting is moved to thurs bc half the team is out, pls update ur calendars thx", "more formal",
             "Please note that the meeting has been moved to Thursday, as half of the team is out of office. Kindly update your calendars. Thank you."),
            ("We regret to inform you that your application has not been successful at this time.", "friendlier",
             "Thank you so much for applying. Unfortunately we won't be moving forward this time, but we really appreciated getting to know you."),
            ("The product is good but the delivery took forever and nobody answered my emails.", "more constructive",
             "I'm happy with the product itself. The delivery took much longer than expected, though, and I didn't get replies to my emails; faster updates would make a big difference."),
            ("I think maybe we could possibly consider looking into alternative options for the venue?", "more confident",
             "Let's look at alternative venues."),
            ("Pursuant to our previous correspondence, kindly find attached the requested documentation.", "plain English",
             "As discussed, I've attached the documents you asked for."),
            ("Due to the fact that the server was down for a period of time, the report was not able to be generated.", "more concise",
             "The report wasn't generated because the server was down."),
        ])
        q = pick(r, [f"Rewrite this to sound {tone}:\n\n{text}", f"Can you make this {tone}? \"{text}\"", f"Make it {tone}, please: {text}"])
        return [], q, f"Here's a {tone} version:\n\n{out}"

    def workout():
        goal = pick(r, ["run a 10k", "do 10 pull-ups", "improve posture", "lose weight without a gym", "get stronger for hiking",
                        "touch my toes"])
        weeks = r.randint(4, 16)
        q = pick(r, [f"Make me a {weeks}-week plan to {goal}. I can train 3 times a week.", f"How should I train to {goal} in {weeks} weeks?",
                     f"Beginner here, want to {goal}. Weekly routine?"])
        return [], q, f"Here's a {weeks}-week progression to {goal}: weeks 1-2 build the habit with short, easy sessions; the middle weeks add volume by about 10% per week; the last two weeks taper. Rest days matter as much as training days."

    def books():
        b = pick(r, BOOKS)
        q = pick(r, [f"I loved {b}. What should I read next?", f"Books similar to {b}? I've read most of the classics.",
                     f"Recommend 3 books for someone who enjoyed {b}."])
        others = [x for x in BOOKS if x != b]
        recs = r.sample(others, 3)
        return [], q, "If you enjoyed " + b + ", try:\n" + "\n".join(f"- *{x}*: shares its {pick(r, ['voice', 'pacing', 'curiosity', 'themes'])}" for x in recs)

    def pet_name():
        species, trait = pick(r, PETS)
        q = pick(r, [f"Name ideas for my new {species}? It's {trait}.", f"Help me name a {species} that is {trait}.",
                     f"We just adopted a {species} ({trait}). Funny names please!"])
        names = r.sample(["Biscuit", "Pixel", "Mochi", "Sir Reginald", "Noodle", "Captain", "Waffles", "Pepper", "Ziggy", "Olive"], 5)
        return [], q, "Some ideas: " + ", ".join(names) + ". Try calling each one out loud for a day and see which one sticks."

    def toast():
        who = pick(r, ["my sister's wedding", "my best friend's 40th birthday", "my parents' 30th anniversary",
                       "a colleague's retirement", "my brother's graduation"])
        first = pick(r, FIRST_NAMES)
        q = pick(r, [f"Write a 2-minute toast for {who}. Their name is {first}.", f"I have to give a speech at {who} ({first}). Something funny but touching?",
                     f"Toast for {who}, keep it under 200 words, mention {first}'s love of {pick(r, INTERESTS)}."])
        return [], q, f"Good evening everyone. For those who don't know me, I've known {first} for a long time, long enough to have stories I promised not to tell tonight. ... So please raise your glasses: to {first}!"

    def interview_questions():
        role = pick(r, ["a junior data analyst", "a head chef", "a product manager", "a nurse practitioner", "a site reliability engineer",
                        "a kindergarten teacher", "a sales development rep"])
        q = pick(r, [f"What questions should I ask when interviewing {role}?", f"I'm hiring {role}. Give me 6 good interview questions.",
                     f"Prep me for an interview as {role}: what will they ask?"])
        return [], q, f"Strong questions for {role}:\n1. Tell me about a time something went wrong and what you did.\n2. How do you prioritise when everything is urgent?\n3. What would you change in your first 90 days?\n4. Describe a decision you made with incomplete information.\n5. How do you learn a new tool quickly?\n6. What kind of feedback helps you most?"

    def history_q():
        q, ans = pick(r, HISTORY_QUESTIONS)
        q2 = pick(r, [q, q + " Short answer please.", "Quick history question: " + q])
        return [], q2, "In short, " + ans

    def ethics_q():
        q = pick(r, ETHICS_QUESTIONS)
        return [], pick(r, [q, q + " I'd like arguments on both sides.", "Debate prep: " + q]), \
            "There are serious arguments on both sides. A consequentialist would weigh outcomes; a deontologist would ask which duties apply regardless of outcome. Most people land somewhere in between, depending on how much harm is at stake and who bears it."

    def error_help():
        e, fix = pick(r, ERRORS)
        q = pick(r, [f"What does this error mean? `{e}`", f"Getting {e} and I'm stuck, any idea?", f"How do I fix: {e}"])
        return [], q, f"This means {fix}"

    def excel():
        t, formula = pick(r, EXCEL_TASKS)
        q = pick(r, [f"Excel formula to {t}?", f"In Google Sheets, how do I {t}?", f"Spreadsheet help: I need to {t}."])
        return [], q, f"Use {formula}. Put it in the first row and fill down if it refers to a single row; adjust the ranges to your sheet."

    def riddle():
        q, a = pick(r, RIDDLES)
        return [], pick(r, [f"Riddle for you: {q}", f"My son asked me this: {q} What's the answer?"]), f"{a} Nice one!"

    def term():
        t, d = pick(r, TERMS)
        q = pick(r, [f"What is {t}, in plain language?", f"Can you explain {t}? My contract mentions it.", f"Define {t} with an example."])
        return [], q, f"{t[0].upper() + t[1:]} is {d}" if not t.startswith(("a ", "an ")) else f"In plain language, {t} is {d}"

    def git_help():
        t, how = pick(r, GIT_TASKS)
        q = pick(r, [f"How do I {t} in git?", f"git question: {t}?", f"What's the safest way to {t}?"])
        return [], q, how + " If you're unsure, create a backup branch first with `git branch backup`."

    def study_plan():
        subj = pick(r, ["organic chemistry", "the bar exam", "AWS certification", "Japanese N4", "calculus II", "a CFA level 1 exam"])
        weeks = r.randint(3, 12)
        q = pick(r, [f"I have {weeks} weeks to prepare for {subj}. Make me a study schedule.", f"Study plan for {subj}, {r.randint(1, 4)} hours a day, exam in {weeks} weeks?"])
        return [], q, f"With {weeks} weeks: first third for covering all topics once, middle third for practice problems and weak areas, last third for timed mock exams and review. Schedule short daily sessions over long weekend marathons."

    def salary():
        role = pick(r, ["software engineer", "marketing manager", "nurse", "designer", "teacher", "accountant"])
        q = pick(r, [f"I got an offer as a {role}, how do I negotiate the salary without losing it?",
                     f"Negotiation tips for a {role} offer? They offered {r.randint(45, 140)}k."])
        return [], q, "Thank them, express enthusiasm, then anchor with data: 'Based on the market and my experience, I was expecting X.' Ask about the whole package (bonus, equity, leave, remote days). Offers are rarely withdrawn over a polite counter."

    def packing():
        trip = pick(r, ["a week of hiking in Patagonia", "a business trip to Singapore", "a ski weekend in the Alps",
                        "a beach holiday in Crete with a toddler", "a rainy week in Scotland"])
        return [], pick(r, [f"Packing list for {trip}?", f"What should I pack for {trip}? Carry-on only."]), \
            f"For {trip}, layer-based clothing, one pair of comfortable shoes, a small first-aid kit, chargers and adapters, and copies of documents. Roll clothes to save space."

    def dream():
        d = pick(r, ["my teeth falling out", "being late for an exam I never studied for", "flying over my hometown",
                     "being chased through a supermarket", "finding a new room in my house"])
        return [], pick(r, [f"I keep dreaming about {d}. What could it mean?", f"Weird dream last night: {d}. Thoughts?"]), \
            "Dreams like this are very common and usually reflect everyday stress or change rather than anything literal. Notice what was happening in your life the days before; that's often the best clue."

    def multi_turn_chat():
        topic = pick(r, ["learning guitar as an adult", "moving to Berlin", "starting a vegetable garden", "switching to Linux",
                         "training for a first triathlon", "adopting a rescue dog", "learning to cook Thai food"])
        hist = [{"role": "user", "content": f"I'm thinking about {topic}. Is it a good idea?"},
                {"role": "assistant", "content": f"It can be a great decision. What's drawing you to {topic}, and what worries you most?"}]
        worry = pick(r, ["time: I work long hours", "money", "I'm not sure I'll stick with it", "I don't know anyone who has done it"])
        q = f"Mostly {worry}. How would you start?"
        return hist, q, "That's a reasonable concern. Start small: a two-week trial with a clear, tiny goal, a budget cap, and a check-in with yourself at the end. If it still feels right, scale up gradually."

    def multi_turn_compare():
        langs = r.sample(["Python", "Go", "Rust", "TypeScript", "Kotlin", "Elixir"], 2)
        project = pick(r, ["a CLI tool", "a web scraper", "a real-time chat server", "a data pipeline", "a mobile backend"])
        hist = [{"role": "user", "content": f"Should I use {langs[0]} or {langs[1]} for {project}?"},
                {"role": "assistant", "content": f"Both can work. {langs[0]} is usually faster to write; {langs[1]} has different strengths. What matters most to you: speed of development, performance or hiring?"}]
        q = pick(r, ["Performance, and I'm the only developer.", "Mostly speed of development, it's a side project.", "Hiring, the team will grow next year."])
        return hist, q, f"Given that, I'd lean towards the option that best matches your priority; for {project} with your constraint, start with a small prototype in the favoured language and measure before committing."

    def tagline():
        prod = pick(r, ["a reusable coffee cup", "a budgeting app for couples", "a dog-walking service", "an online piano course",
                        "a solar phone charger", "a neighbourhood bakery"])
        return [], pick(r, [f"Give me 5 taglines for {prod}.", f"Slogan ideas for {prod}? Witty, not cheesy."]), \
            "\n".join(f"{i + 1}. {t}" for i, t in enumerate(r.sample(["Small change, big difference.", "Made for mornings.", "Less hassle, more life.",
                                                                       "Good things, close to home.", "Your future self says thanks.", "Simple by design."], 5)))

    def math_problem():
        a_, b_ = r.randint(2, 9), r.randint(10, 60)
        if r.random() < 0.5:
            q = f"A train leaves at {a_}pm going {b_} mph. Another leaves the same station an hour later at {b_ + 15} mph on the same track. When does the second catch up?"
            t = (b_ + 15) / 15  # hours after the first departure: b*t = (b+15)*(t-1)
            h, m = divmod(round(t * 60), 60)
            clock = ((12 + a_) * 60 + round(t * 60)) % (24 * 60)
            clock_txt = f"{(clock // 60 - 1) % 12 + 1}:{clock % 60:02d}{'pm' if clock >= 12 * 60 else 'am'}"
            a = (f"Let t be the hours since the first train left. Distances: {b_}t and {b_ + 15}(t - 1). Setting them equal: "
                 f"{b_}t = {b_ + 15}t - {b_ + 15}, so 15t = {b_ + 15} and t = {t:.2f} hours ({h} h {m} min). "
                 f"The second train catches up at about {clock_txt}, "
                 f"{b_ * t:.1f} miles from the station.")
        else:
            q = f"If I save ${b_} a week and my account pays {a_}% interest once a year, how much do I have after 3 years? Show the steps."
            yearly = 52 * b_
            bal, steps = 0.0, []
            for y in range(1, 4):
                bal = (bal + yearly) * (1 + a_ / 100)
                steps.append(f"Year {y}: (previous + ${yearly:,}) x {1 + a_ / 100:.2f} = ${bal:,.2f}")
            a = (f"Assuming the interest is added at the end of each year on everything deposited that year: you save 52 x ${b_} = ${yearly:,} a year.\n"
                 + "\n".join(steps) + f"\n\nSo after 3 years you'd have about ${bal:,.2f}, of which ${3 * yearly:,} are your deposits.")
        return [], q, a

    def opinion_chat():
        thing = pick(r, ["pineapple on pizza", "working four days a week", "e-readers vs paper books", "open-plan offices",
                         "learning Latin in school", "tipping culture"])
        return [], pick(r, [f"What do you think about {thing}?", f"Hot take time: {thing}, yes or no?"]), \
            f"People feel strongly about {thing}. The case for it is mostly about flexibility and personal preference; the case against is about trade-offs that show up later. Where do you stand?"

    def support_chat():  # the human-facing conversation of the support agent
        first = pick(r, FIRST_NAMES)
        prob = pick(r, ["my order arrived late twice", "I was transferred four times", "the replacement is also broken",
                        "nobody replied to my emails for ten days"])
        hist = [{"role": "user", "content": f"Hi, I'm {first}. Honestly I'm really frustrated, {prob}."},
                {"role": "assistant", "content": f"I'm really sorry, {first}. That's not the experience we want you to have. Can you tell me a bit more?"}]
        q = pick(r, ["I just want to know whether I should keep ordering from you at all.", "What are you going to do to make this right?",
                     "Can you at least explain why this keeps happening?"])
        return hist, q, f"That's completely fair to ask, {first}. I've flagged your case as a priority, added a note for the team, and I'd like to offer a goodwill credit while we fix the root cause. I'll personally follow up by email within 24 hours."

    return [startup_names, explain_difference, poem, email_draft, debug_code, itinerary, recipe, career, eli5, gift,
            rewrite, workout, books, pet_name, toast, interview_questions, history_q, ethics_q, error_help, excel, riddle,
            term, git_help, study_plan, salary, packing, dream, multi_turn_chat, multi_turn_compare, tagline, math_problem,
            opinion_chat, support_chat]


QUOTES = [("The only thing we have to fear is fear itself.", "Franklin D. Roosevelt",
           "he was telling a country in the depths of the Depression that panic itself was the biggest danger, because fear was paralysing banks, spending and action."),
          ("Not everything that counts can be counted.", "William Bruce Cameron (often attributed to Einstein)",
           "numbers capture only part of what matters; some important things, like trust or curiosity, resist measurement."),
          ("We are what we repeatedly do.", "Will Durant, summarising Aristotle",
           "character is built by habits rather than by single grand acts."),
          ("The map is not the territory.", "Alfred Korzybski",
           "our models and descriptions of the world are simplifications and should not be confused with reality itself."),
          ("Premature optimization is the root of all evil.", "Donald Knuth",
           "optimising code before you know where the real bottlenecks are wastes effort and makes code harder to maintain.")]
FACT_QUESTIONS = [("How far away is the Moon?", "On average about 384,400 km (238,900 miles); it varies between roughly 363,000 and 405,000 km over its orbit."),
                  ("How many bones are in the adult human body?", "206. Babies are born with around 270, and some fuse as they grow."),
                  ("Why do cats purr?", "Cats purr when content, but also when stressed or injured; the vibration (25-150 Hz) may even help healing. It's produced by rapid twitching of the laryngeal muscles."),
                  ("How long does light from the Sun take to reach Earth?", "About 8 minutes and 20 seconds, since the Sun is about 150 million km away."),
                  ("What's the tallest mountain in the solar system?", "Olympus Mons on Mars, roughly 22 km high, about two and a half times the height of Everest above sea level."),
                  ("How do octopuses change colour?", "They have chromatophores, small sacs of pigment in the skin surrounded by muscles; the nervous system stretches or squeezes them within milliseconds.")]
REGEX_TASKS = [("match a UK postcode", r"`^[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}$` (case-insensitive); it covers the standard formats such as SW1A 1AA and M1 1AE."),
               ("find all hashtags in a tweet", r"`#\w+` with a global match, e.g. `re.findall(r'#\w+', text)` in Python."),
               ("validate a 24-hour time like 23:59", r"`^([01]\d|2[0-3]):[0-5]\d$`."),
               ("match a hex colour like #1a2B3c or #fff", r"`^#(?:[0-9a-fA-F]{3}){1,2}$`."),
               ("capture the year from dates like 2024-03-15", r"`^(\d{4})-\d{2}-\d{2}$`; the year is group 1.")]
SHELL_TASKS = [("find the 10 biggest files under the current directory", "`find . -type f -exec du -h {} + | sort -rh | head -n 10`"),
               ("count lines in all .py files", "`find . -name '*.py' -print0 | xargs -0 wc -l | tail -n 1`"),
               ("rename all .jpeg files to .jpg", "`for f in *.jpeg; do mv -- \"$f\" \"${f%.jpeg}.jpg\"; done`"),
               ("see which process is using port 8080", "`lsof -i :8080` (or `ss -ltnp | grep 8080` on Linux)"),
               ("delete files older than 30 days in /tmp/logs", "`find /tmp/logs -type f -mtime +30 -delete` (run it without `-delete` first to check the list)")]
COMPLEXITY = [("binary search", "O(log n) time, O(1) extra space for the iterative version."),
              ("inserting into a Python dict", "O(1) on average, O(n) in the rare worst case when the table resizes or many keys collide."),
              ("sorting with merge sort", "O(n log n) in every case, with O(n) extra space."),
              ("checking `x in my_list` in Python", "O(n), since it scans the list; use a set for O(1) average lookups."),
              ("BFS on a graph", "O(V + E) with an adjacency list.")]
HOUSEHOLD = [("get rid of fruit flies in my kitchen", "Set a trap: a small bowl of apple cider vinegar with a drop of dish soap, covered with cling film with a few holes. Remove overripe fruit, rinse recycling and clean the sink drain."),
             ("get red wine out of a carpet", "Blot (don't rub), pour a little cold water, then a paste of baking soda and water; let it dry and vacuum. For old stains, a mix of dish soap and hydrogen peroxide works, but spot-test first."),
             ("stop my windows from fogging up in winter", "Fogging is moisture condensing on cold glass: ventilate after showers and cooking, use extractor fans, dry laundry outside if you can, and consider a dehumidifier."),
             ("unclog a slow bathroom sink without chemicals", "Remove and clean the pop-up stopper, then use a plastic drain snake to pull out hair. Finish with hot water; baking soda and vinegar helps with light buildup."),
             ("keep basil alive on a windowsill", "Give it 6+ hours of sun, water when the top centimetre of soil is dry, and pinch off flower buds and the top leaves regularly so it bushes out.")]
ANIMAL_FACTS = [("axolotls", "They can regrow limbs, parts of their heart and even parts of their brain, and they stay in their larval form their whole life."),
                ("sloths", "They can hold their breath for up to 40 minutes by slowing their heart rate, and they're surprisingly good swimmers."),
                ("crows", "They recognise individual human faces and can hold a grudge, passing the information on to other crows."),
                ("tardigrades", "They survive near-vacuum, extreme radiation and temperatures close to absolute zero by drying out into a state called a tun."),
                ("honeybees", "They tell each other where flowers are with a 'waggle dance' whose angle encodes direction relative to the sun.")]
BEST_TIME = [("Kyoto", "late March to early April for the cherry blossoms, or November for the autumn colours; July and August are hot and humid."),
             ("Lisbon", "spring (March to May) and early autumn (September and October): warm and sunny, with fewer crowds than in July and August."),
             ("Cape Town", "November to March, the dry, warm summer; if you love whales, nearby Hermanus is best from June to November."),
             ("Reykjavik", "June to August for the midnight sun and open highland roads, or September to March for a chance of northern lights."),
             ("Mexico City", "March to May, when it is dry and warm; from June to October afternoon storms are common."),
             ("Bangkok", "November to February, the cool and dry season; April is the hottest month."),
             ("New York", "late April to early June and September to early November, when the weather is mild."),
             ("Marrakech", "March to May and September to November; summers are very hot.")]
ABBREVIATIONS = [("GDPR", "General Data Protection Regulation: the EU law on personal data."),
                 ("SaaS", "Software as a Service: software you use over the internet on a subscription instead of installing it."),
                 ("APR", "Annual Percentage Rate: the yearly cost of a loan, including interest and some fees."),
                 ("OKR", "Objectives and Key Results: a goal-setting method with a qualitative objective and measurable results."),
                 ("HVAC", "Heating, Ventilation and Air Conditioning."),
                 ("ETA", "Estimated Time of Arrival.")]


def oe_more_variants(rng: random.Random, fake: Fake) -> list:
    """More kinds of one-off requests, in the same shape as oe_variants."""
    r = rng

    def quote():
        q_, who, meaning = pick(r, QUOTES)
        return [], pick(r, [f"What does \"{q_}\" actually mean?", f"Someone quoted \"{q_}\" in a meeting. Explain?"]), \
            f"The line is usually credited to {who}. The idea is that {meaning}"

    def fact():
        q_, a = pick(r, FACT_QUESTIONS)
        return [], pick(r, [q_, f"Random question: {q_[0].lower() + q_[1:]}", f"My daughter wants to know: {q_[0].lower() + q_[1:]}"]), a

    def regex():
        t, a = pick(r, REGEX_TASKS)
        return [], pick(r, [f"Regex to {t}?", f"I need a regular expression to {t}.", f"Can you write a regex that will {t}?"]), f"Try {a}"

    def shell():
        t, a = pick(r, SHELL_TASKS)
        return [], pick(r, [f"Bash one-liner to {t}?", f"How can I {t} from the terminal?", f"linux: {t}"]), f"{a}"

    def complexity():
        t, a = pick(r, COMPLEXITY)
        return [], pick(r, [f"What's the time complexity of {t}?", f"Big-O of {t}? Studying for interviews."]), f"{t[0].upper() + t[1:]}: {a}"

    def household():
        t, a = pick(r, HOUSEHOLD)
        return [], pick(r, [f"How do I {t}?", f"Any tips to {t}?", f"What's the best way to {t}?"]), a

    def animal_fact():
        animal, a = pick(r, ANIMAL_FACTS)
        return [], pick(r, [f"Tell me a fun fact about {animal}.", f"What's the coolest thing about {animal}?"]), f"Here's one: {a}"

    def best_time():
        city, a = pick(r, BEST_TIME)
        return [], pick(r, [f"When is the best time of year to visit {city}?", f"Thinking about {city} next year. Which month would you pick?",
                            f"Is there a bad season to go to {city}?"]), f"For {city}, go in {a}"

    def abbreviation():
        ab, a = pick(r, ABBREVIATIONS)
        return [], pick(r, [f"What does {ab} stand for?", f"{ab} = ?", f"Everyone at work says {ab}, what is it?"]), f"{ab} stands for {a}"

    def tip_split():
        bill, people, pct = round(r.uniform(35, 420), 2), r.randint(2, 9), r.choice([10, 15, 18, 20])
        total = round(bill * (1 + pct / 100), 2)
        q = pick(r, [f"Our bill is ${bill:.2f} for {people} people. With a {pct}% tip, how much does each person pay?",
                     f"Split ${bill:.2f} between {people} friends including {pct}% tip?"])
        return [], q, f"Tip: ${bill * pct / 100:.2f}, total ${total:.2f}. Each of the {people} pays ${total / people:.2f} (rounded to the cent)."

    def cover_letter():
        role = pick(r, ["junior UX designer", "warehouse supervisor", "marketing intern", "backend developer", "veterinary nurse", "museum educator"])
        company = pick(r, COMPANIES)
        return [], pick(r, [f"Write the opening paragraph of a cover letter for a {role} role at {company}.",
                            f"Help me start my cover letter: {role} at {company}, I'm coming from a different field."]), \
            f"Dear Hiring Team at {company},\n\nWhen I saw the {role} opening, I recognised the kind of work I've been building towards: solving practical problems for real people, carefully and with good humour. I'd love to bring that to {company}."

    def linkedin():
        news = pick(r, ["I got promoted to team lead", "I finished my MBA", "I'm starting a new job at a climate startup",
                        "our team shipped a feature I've worked on for a year", "I'm leaving my job after 8 years to travel"])
        return [], pick(r, [f"Write a LinkedIn post: {news}. Not cringey please.", f"LinkedIn announcement that {news}, short and humble."]), \
            f"Some personal news: {news.replace('I', 'I', 1)}. Grateful to the people who taught me the most along the way, and excited about what comes next. Thank you all!"

    def story_opening():
        genre = pick(r, ["a cozy mystery", "hard science fiction", "a ghost story", "a fantasy heist", "a romantic comedy"])
        setting = pick(r, ["a night ferry", "an abandoned observatory", "a small-town bakery", "a generation ship", "a flooded Venice"])
        return [], pick(r, [f"Write the first paragraph of {genre} set on {setting}.", f"Story starter: {genre}, {setting}. Go!"]), \
            f"The first thing anyone noticed about {setting} that night was the silence. Then came the knock: three taps, patient, from a door that everyone agreed had been sealed for years."

    def meal_plan():
        diet = pick(r, ["vegetarian", "high-protein", "low-FODMAP", "budget-friendly", "Mediterranean", "dairy-free"])
        return [], pick(r, [f"Give me a 5-day {diet} dinner plan.", f"Weekly {diet} meal plan for a busy family of {r.randint(2, 6)}?"]), \
            f"A simple {diet} week:\nMon: lentil or bean stew\nTue: sheet-pan vegetables with a grain\nWed: stir-fry\nThu: big salad with a protein\nFri: homemade pizza night\nCook double on Monday and Wednesday to cover lunches."

    def party_plan():
        age, theme = r.randint(4, 12), pick(r, ["dinosaurs", "space", "pirates", "science lab", "superheroes", "unicorns"])
        return [], pick(r, [f"Plan a birthday party for a {age}-year-old, theme {theme}, 10 kids.", f"Ideas for a {theme} party for my {age} year old?"]), \
            f"For a {theme} party for {age}-year-olds: a themed craft on arrival, one active game, one quiet game, food, cake, and a small take-home item. Keep it to two hours."

    def doctor_questions():
        cond = pick(r, ["high blood pressure", "type 2 diabetes", "migraines", "a new asthma diagnosis", "knee surgery next month"])
        return [], pick(r, [f"What should I ask my doctor about {cond}?", f"Appointment tomorrow about {cond}. Questions I should ask?"]), \
            f"Useful questions about {cond}: What are my options and their side effects? What should I monitor at home? Which symptoms mean I should call you straight away? When is my next check-up? Write them down and bring your medication list."

    def say_no():
        sit = pick(r, ["helping a friend move every single year", "covering a colleague's shifts again", "lending money to my cousin",
                       "joining another committee at work", "hosting the family holiday dinner"])
        return [], pick(r, [f"How do I politely say no to {sit}?", f"I always end up {sit}. How do I decline without guilt?"]), \
            "Keep it short and kind, without over-explaining: 'I can't this time, but I hope it goes well.' Offer an alternative only if you genuinely want to. Saying no earlier is easier for both sides."

    def explain_code():
        code, expl = pick(r, [("[x * 2 for x in nums if x > 0]", "builds a new list with every positive number in `nums` doubled."),
                              ("const { a, ...rest } = obj;", "pulls `a` out of `obj` and puts all the other properties into a new object `rest`."),
                              ("SELECT COALESCE(nickname, name) FROM users;", "returns each user's nickname, or their name when the nickname is NULL."),
                              ("x = y if y is not None else default", "sets `x` to `y` unless `y` is None, in which case it uses `default`."),
                              ("git log --oneline --graph --all", "shows every branch's history compactly, one line per commit, with an ASCII graph of merges.")])
        return [], pick(r, [f"What does this line do? `{code}`", f"Explain: {code}"]), f"It {expl}"

    def band_name():
        genre = pick(r, ["jazz trio", "punk band", "folk duo", "synthwave project", "barbershop quartet", "metal band"])
        return [], pick(r, [f"Name ideas for our {genre}?", f"We need a name for a {genre} made of {pick(r, ['nurses', 'accountants', 'teachers', 'engineers'])}."]), \
            "A few: " + ", ".join(r.sample(["The Late Shift", "Quiet Riot Act", "Paper Lanterns", "Neon Orchard", "Static & Stone", "The Overtime Choir",
                                            "Velvet Ledger", "Low Tide Radio"], 4)) + ". Check the name isn't taken on streaming platforms first."

    def bio():
        prof = pick(r, ["freelance photographer", "yoga teacher", "data consultant", "ceramic artist", "family lawyer", "personal trainer"])
        first, last = fake.name()
        return [], pick(r, [f"Write a short website bio for me: {first} {last}, {prof}, {r.randint(3, 20)} years of experience.",
                            f"Third-person bio for {first} {last}, a {prof}. 60 words."]), \
            f"{first} {last} is a {prof} who helps clients get results without the fuss. Known for a calm, practical approach, {first} works with people who want clear advice and honest feedback."

    def todo_from_notes():
        notes = r.sample(["call plumber re leak", "send invoice to Dana", "book dentist", "renew passport (expires Aug)", "buy birthday gift for Sam",
                          "fix bike brakes", "reply to landlord", "cancel free trial before Friday"], 4)
        return [], "Turn these notes into a prioritised to-do list:\n" + "\n".join(notes), \
            "Here's a prioritised list:\n" + "\n".join(f"{i + 1}. [ ] {n[0].upper() + n[1:]}" for i, n in enumerate(sorted(notes, key=lambda x: ("Friday" not in x and "expires" not in x, x))))

    def unit_tests():
        fn = pick(r, ["def is_palindrome(s): return s == s[::-1]", "def clamp(x, lo, hi): return max(lo, min(x, hi))",
                      "def slugify(t): return '-'.join(t.lower().split())"])
        name = fn.split("(")[0][4:]
        return [], pick(r, [f"Write pytest tests for:\n{fn}", f"Unit tests for this please:\n\n{fn}"]), \
            f"```python\nimport pytest\nfrom mymodule import {name}\n\n\ndef test_{name}_typical():\n    ...\n\n\ndef test_{name}_edge_cases():\n    ...\n```\nCover the normal case, empty input and boundaries."

    def job_offer_chat():
        a_, b_ = pick(r, [("a startup", "a bank"), ("a remote job", "an office job"), ("a higher salary", "a shorter commute"), ("a big tech company", "a non-profit")])
        hist = [{"role": "user", "content": f"I have two offers: {a_} and {b_}. Help me decide."},
                {"role": "assistant", "content": "Happy to help. What matters most to you right now: money, learning, stability or flexibility?"}]
        q = pick(r, ["Learning, I think. I'm early in my career.", "Stability, we're planning to buy a house.", "Flexibility, I have a young kid."])
        return hist, q, f"With that priority, write down for {a_} and {b_} how each scores on it, then on your second priority. The option that clearly wins on what matters most is usually right; if it's close, pick the team you'd rather learn from."

    return [best_time, quote, fact, regex, shell, complexity, household, animal_fact, abbreviation, tip_split, cover_letter, linkedin,
            story_opening, meal_plan, party_plan, doctor_questions, say_no, explain_code, band_name, bio, todo_from_notes,
            unit_tests, job_offer_chat]


OE_PREAMBLES = ["Quick question.", "Random one:", "I'm a {job}.", "Hey!", "Sorry if this is basic.", "Help please :)",
                "My {rel} asked me this and I blanked.", "Before my {event} today,", "Been wondering about this:",
                "ok so", "Hi, {first} here.", "Asking for my {rel}."]
OE_SUFFIXES = ["Thanks!", "No rush.", "Keep it short.", "Be honest.", "thx", "🙏", "Cheers.", "Explain like I'm new to this."]


OE_SYSTEMS = [None, None, "You are a helpful assistant.", "You are a friendly, concise assistant. Use markdown when helpful.",
              "You are Nova, a personal assistant. Be warm and practical.",
              "You are an expert assistant. Think carefully and answer thoroughly.",
              "You are Sage, the assistant in a note-taking app. Answer the user's questions directly.",
              "Be concise. Prefer short paragraphs over lists unless asked."]
TRAVEL_KINDS = {"itinerary", "packing", "best_time"}
SUPPORT_KINDS = {"support_chat"}


def gen_open_ended(rng: random.Random, fake: Fake, ts: float, state: dict) -> dict:
    """One unique one-off call; `state` keeps what was asked so far so that no kind of request
    recurs often enough to look like a task (at most `cap` per kind, no repeated question or answer)."""
    variants = oe_variants(rng, fake) + oe_more_variants(rng, fake)
    seen, counts = state.setdefault("seen", set()), state.setdefault("counts", Counter())
    cap = math.ceil(1.4 * state["total"] / len(variants))
    for _ in range(50):
        open_kinds = [fn for fn in variants if counts[fn.__name__] < cap] or variants
        fn = pick(rng, open_kinds)
        history, core, answer = fn()
        user = core
        if rng.random() < 0.3:
            pre = pick(rng, OE_PREAMBLES).format(job=pick(rng, ["teacher", "nurse", "developer", "student", "chef", "retiree"]),
                                                 rel=pick(rng, ["son", "boss", "roommate", "mum", "partner"]),
                                                 event=pick(rng, ["meeting", "exam", "flight", "interview"]),
                                                 first=pick(rng, FIRST_NAMES))
            user = f"{pre} {user[0].lower() + user[1:] if pre.endswith((',', 'and')) else user}"
        if rng.random() < 0.2:
            user = f"{user} {pick(rng, OE_SUFFIXES)}"
        if core not in seen and answer not in seen:  # the same answer means the same question, reworded
            break
    seen.update((core, answer))
    kind = fn.__name__
    counts[kind] += 1
    if kind in TRAVEL_KINDS and rng.random() < 0.8:
        system, _ = travel_system(rng, fake, ts)
        workload, extra = "travel-agent", {"tools": TRAVEL_TOOLS, "tool_choice": "auto"}
    elif kind in SUPPORT_KINDS:
        system = ("You are the live-chat assistant of Helix Support. Be empathetic, take ownership and never blame the "
                  "customer. You may offer a goodwill credit of up to $20.")
        workload, extra = "support-agent", {}
    else:
        system, workload, extra = pick(rng, OE_SYSTEMS), "assistant-chat", {}
    messages = ([{"role": "system", "content": system}] if system else []) + history + [{"role": "user", "content": user}]
    request = {"model": "gpt-4.1" if rng.random() < 0.3 else "gpt-4o", "messages": messages, **extra,
               "temperature": rng.choice([0.7, 0.8, 1.0])}
    return {"request": request, "content": answer, "workload": workload}


# --------------------------------------------------------------------------------------------
# traffic shape, records, main
# --------------------------------------------------------------------------------------------

BUSINESS_HOURS = [1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 14, 13, 11, 13, 14, 13, 11, 8, 5, 4, 3, 2, 2, 1]
EVENING_HOURS = [2, 1, 1, 1, 1, 1, 2, 4, 6, 7, 7, 7, 8, 8, 7, 7, 8, 9, 11, 13, 13, 11, 7, 4]
FLAT_HOURS = [5, 5, 5, 5, 5, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9, 9, 8, 7, 6, 6, 5, 5, 5]
PROFILES = {  # task -> (weekend weight, hourly weights)
    "ticket_triage": (0.45, BUSINESS_HOURS), "order_extraction": (0.6, BUSINESS_HOURS), "policy_faq": (0.8, EVENING_HOURS),
    "travel_tools": (1.1, EVENING_HOURS), "incident_summary": (0.2, BUSINESS_HOURS), "ui_translation": (0.05, BUSINESS_HOURS),
    "lead_extraction": (0.15, BUSINESS_HOURS), "open_ended": (0.9, FLAT_HOURS),
}


def sample_ts(rng: random.Random, task: str) -> float:
    weekend_w, hours = PROFILES[task]
    days = [(d, (weekend_w if (START + dt.timedelta(days=d)).weekday() >= 5 else 1.0) * (1 + 0.02 * d)) for d in range(DAYS)]
    day = weighted(rng, days)
    hour = weighted(rng, list(enumerate(hours)))
    return round(START.timestamp() + day * 86400 + hour * 3600 + rng.random() * 3600, 3)


def allocate(calls: int) -> dict[str, int]:
    raw = {t: calls * share for t, (share, _) in TASKS.items()}
    counts = {t: int(v) for t, v in raw.items()}
    for t in sorted(raw, key=lambda t: (-(raw[t] - counts[t]), list(TASKS).index(t)))[: calls - sum(counts.values())]:
        counts[t] += 1
    return counts


def completion_id(rng: random.Random) -> str:
    return "chatcmpl-" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(29))


def build_record(rng: random.Random, task: str, workload: str, ts: float, out: dict) -> dict:
    request = out["request"]
    if "tool_calls" in out:
        message = {"role": "assistant", "content": None,
                   "tool_calls": assistant_tool_msg(rng, out["tool_calls"])["tool_calls"], "refusal": None}
        finish, completion_text = "tool_calls", compact(message["tool_calls"])
    else:
        message = {"role": "assistant", "content": out["content"], "refusal": None}
        finish, completion_text = "stop", out["content"]
    prompt_text = "".join((m.get("content") or "") + compact(m.get("tool_calls") or "") for m in request["messages"])
    prompt_text += compact(request.get("tools") or "") + compact(request.get("response_format") or "")
    prompt_tokens = estimate_tokens(prompt_text) + 3 * len(request["messages"])
    completion_tokens = estimate_tokens(completion_text) + 1
    model, fingerprint = RESPONSE_MODEL[request["model"]]
    response = {"id": completion_id(rng), "object": "chat.completion", "created": int(ts), "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
                "system_fingerprint": fingerprint}
    return {"request": request, "response": response, "metadata": {"task": task, "workload": workload, "ts": ts}}


def generate(seed: int = DEFAULT_SEED, calls: int = DEFAULT_CALLS) -> list[dict]:
    records = []
    policies = {s: store_policy(random.Random(f"{seed}:policy:{s}"), s) for s in STORES}
    counts = allocate(calls)
    open_state: dict = {"total": counts["open_ended"]}
    for order, (task, n) in enumerate(counts.items()):
        rng = random.Random(f"{seed}:{task}")
        fake = Fake(rng)
        times = sorted(sample_ts(rng, task) for _ in range(n))
        for i, ts in enumerate(times):
            if task == "policy_faq":
                out = gen_policy_faq(rng, fake, ts, policies)
            elif task == "open_ended":
                out = gen_open_ended(rng, fake, ts, open_state)
            else:
                out = GENERATORS[task](rng, fake, ts)
            rec = build_record(rng, task, out.get("workload", TASKS[task][1]), ts, out)
            records.append(((ts, order, i), rec))
    records.sort(key=lambda x: x[0])
    return [r for _, r in records]


GENERATORS = {"ticket_triage": gen_ticket_triage, "travel_tools": gen_travel_tools, "order_extraction": gen_order_extraction,
              "incident_summary": gen_incident_summary, "ui_translation": gen_ui_translation,
              "lead_extraction": gen_lead_extraction}


def to_jsonl_gz(records: list[dict]) -> bytes:
    data = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .jsonl.gz path (default: the bundled file)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 0)")
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="number of calls (default 3600)")
    args = parser.parse_args(argv)
    if args.calls < len(TASKS):
        parser.error(f"--calls must be at least {len(TASKS)}")
    records = generate(args.seed, args.calls)
    blob = to_jsonl_gz(records)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(args.out)
    counts = Counter(r["metadata"]["task"] for r in records)
    print(f"wrote {len(records)} calls ({len(blob) / 1e6:.2f} MB) to {args.out}", file=sys.stderr)
    for task, n in counts.most_common():
        print(f"  {task:18s} {n:5d}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
