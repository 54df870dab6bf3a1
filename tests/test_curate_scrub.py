"""PII scrubbing: recall and precision on the labelled set, aligned placeholders, nothing left in exports."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from protege.curate.evaluate_pii import evaluate_scrubber
from protege.curate.pipeline import curate_calls
from protege.curate.scrub import Scrubber
from protege.records import CallRecord

CASES = Path(__file__).parent / "data" / "pii_cases.jsonl"
STRUCTURED = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "URL", "SECRET")


@pytest.fixture(scope="module")
def scrubber() -> Scrubber:
    return Scrubber()


@pytest.fixture(scope="module")
def scores(scrubber):
    cases = [json.loads(line) for line in CASES.read_text().splitlines()]
    return evaluate_scrubber(scrubber, cases)


@pytest.mark.parametrize("type_", STRUCTURED)
def test_structured_types_recall_at_least_99_percent(scores, type_):
    s = scores[type_]
    assert s.gold >= 100
    assert s.recall >= 0.99, f"{type_} recall {s.recall:.3f}; missed e.g. {s.misses}"
    assert s.precision >= 0.99, f"{type_} precision {s.precision:.3f}"


def test_person_names_recall_is_measured(scores, scrubber):
    """Names are the hard type (spaCy NER + census first names + gazetteer + context rules): measured, floor-guarded."""
    s = scores["PERSON"]
    print(f"PERSON recall {s.recall:.3f} precision {s.precision:.3f} ({scrubber.detectors[-1].backend})")
    floor = 0.95 if "spacy" in scrubber.detectors[-1].backend else 0.9  # 98.2% / 94.0% measured
    assert s.recall >= floor
    assert s.precision >= 0.95


def test_no_false_alarms_on_lookalikes(scrubber):
    text = "Order ORD-2024-118842 due 2024-03-15, total $1,299.00, version v2.3.1, ticket #88123, SKU 12345678, at 14:30."
    assert scrubber.find(text) == []


def test_sentence_openers_and_line_labels_are_not_names(scrubber):
    """spaCy reads some capitalised sentence starts as people ("Can I", "When"): a span of English function words,
    a header label or a sign-off alone is never replaced; the name next to it still is."""
    text = ("Email: ana.silva@example.com\nCan I return the jacket? When does it ship? How do I pay?\n"
            "Cheers,\nAna Silva")
    found = {text[s.start:s.end] for s in scrubber.find(text)}
    assert found == {"ana.silva@example.com", "Ana Silva"}, found


def _call(user: str, answer: str, args: dict | None = None) -> CallRecord:
    msg = {"role": "assistant", "content": answer}
    if args is not None:
        msg["tool_calls"] = [{"id": "call_1", "type": "function", "function": {"name": "send_email", "arguments": json.dumps(args)}}]
    return CallRecord(id="c1", ts=1.0, request={"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You help the support team."}, {"role": "user", "content": user}]},
        response={"choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]}, task_id="t")


def test_placeholders_are_typed_numbered_and_aligned(scrubber):
    rec = _call("Email maria.gonzalez@example.com or call +1 (415) 555-0132; cc j.smith@example.org.",
                "I wrote to Maria.Gonzalez@example.com.", {"to": "maria.gonzalez@example.com", "body": "hi"})
    out = scrubber.scrub_record(rec)
    user = out.request["messages"][1]["content"]
    assert user == "Email <EMAIL_1> or call <PHONE_1>; cc <EMAIL_2>."
    assert out.response["choices"][0]["message"]["content"] == "I wrote to <EMAIL_1>."
    args = json.loads(out.response["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert args == {"to": "<EMAIL_1>", "body": "hi"}  # still valid JSON, same placeholder
    assert out.response["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "send_email"
    assert out.request["messages"][0]["content"] == "You help the support team."
    assert rec.request["messages"][1]["content"].startswith("Email maria")  # the original is untouched


def test_a_found_name_is_replaced_everywhere_including_its_parts(scrubber):
    rec = _call("Please reply to Maria Gonzalez about her refund.", "Dear Ms. Gonzalez, your refund is on its way. Maria Gonzalez's case is closed.")
    out = scrubber.scrub_record(rec)
    assert "Gonzalez" not in orjson.dumps(out.response).decode()
    assert out.request["messages"][1]["content"] == "Please reply to <PERSON_1> about her refund."


def test_a_bare_name_key_is_a_person_only_when_its_value_reads_as_one(scrubber):
    """`name` also names products and companies: an order line's product must reach training data as it is, or the
    specialist learns product names as people's names (and meets real ones at serving)."""
    answer = {"customer_name": "Xiadani Qorvalen", "items": [{"name": "Yoga Mat", "quantity": 3},
                                                             {"name": "Insulated Water Bottle", "quantity": 1}],
              "contact": {"name": "Zanele Oyelaran"}}
    rec = _call("return 3x Yoga Mat and 1 Insulated Water Bottle", json.dumps(answer))
    out = json.loads(scrubber.scrub_record(rec).response["choices"][0]["message"]["content"])
    assert [i["name"] for i in out["items"]] == ["Yoga Mat", "Insulated Water Bottle"]
    assert out["customer_name"] == "<PERSON_1>" and out["contact"]["name"].startswith("<PERSON_")


def test_person_name_fields_in_json_are_scrubbed(scrubber):
    rec = _call("Extract the customer.", json.dumps({"customer_name": "Xiadani Qorvalen", "qty": 2}))
    out = scrubber.scrub_record(rec)
    assert json.loads(out.response["choices"][0]["message"]["content"]) == {"customer_name": "<PERSON_1>", "qty": 2}


def test_fake_mode_is_realistic_and_consistent():
    pytest.importorskip("faker")
    s = Scrubber(detectors=["emails"], mode="fake")
    rec = _call("write to anna@corp.example", "Sent to anna@corp.example")
    out = s.scrub_record(rec)
    fake = out.request["messages"][1]["content"].removeprefix("write to ")
    assert "@" in fake and fake != "anna@corp.example"
    assert out.response["choices"][0]["message"]["content"] == f"Sent to {fake}"
    again = s.scrub_record(rec).request["messages"][1]["content"]
    assert again.endswith(fake)  # same value, same fake, across calls


def test_no_pii_left_in_curated_export(tmp_path, home, scrubber):
    values = ["maria.gonzalez@example.com", "+1 (415) 555-0132", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00",
              "123-45-6789", "192.168.10.24", "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789", "Maria Gonzalez"]
    records = []
    for i in range(10):
        rec = _call(f"Customer Maria Gonzalez ({values[0]}, {values[1]}) paid with {values[2]} from {values[3]}, SSN {values[4]}, "
                    f"IP {values[5]}, key {values[6]}. Request {i}: case number {i * 7919}.", f"Noted for Maria Gonzalez, case {i * 7919}.")
        rec.id = f"c{i}"
        records.append(rec)
    result = curate_calls(records, tmp_path / "out", scrubber=scrubber, near_duplicate_threshold=None)
    written = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*.jsonl"))
    assert written.count(b"\n") == 10
    for v in values:
        assert v.encode() not in written, v
    assert result.scrubbed["EMAIL"] == 10 and result.scrubbed["CARD"] == 10


# --- names outside English, 11-digit mobiles, IBAN spellings (issue 13, item 4) -------------------------------
# Names written here by hand (not drawn from Faker, which bench/pii_locales.py samples from).

MULTILINGUAL_NAMES = [
    ("Please call Zofia Wiśniewska back about the refund.", "Zofia Wiśniewska"),  # Polish, -ska surname
    ("Kunden Karin Lindqvist vill byta adress.", "Karin Lindqvist"),  # Swedish
    ("Müşteri Mehmet Karaoğlu siparişin gelmediğini söylüyor.", "Mehmet Karaoğlu"),  # Turkish
    ("O cliente João da Silva pediu reembolso.", "João da Silva"),  # Portuguese, particle inside
    ("Клиент Смирнов Иван Петрович сообщил, что посылка не пришла.", "Смирнов Иван Петрович"),  # family name first
    ("Please call राहुल शर्मा back today.", "राहुल शर्मा"),  # Devanagari inside English
    ("ग्राहक राहुल शर्मा ने ऑर्डर रद्द करने को कहा है।", "राहुल शर्मा"),  # Hindi
    ("Ticket 4471: 王秀英 says the parcel never arrived.", "王秀英"),  # Han inside English
    ("客户张伟反映包裹还没有收到。", "张伟"),  # Chinese, after a cue
    ("Booking confirmed for 田中 太郎, 2 nights.", "田中 太郎"),  # Japanese, spaced
    ("佐藤花子様から返金についての問い合わせがありました。", "佐藤花子"),  # Japanese, with an honorific
    ("김민준 고객님께 환불 관련 연락 부탁드립니다.", "김민준"),  # Korean
    ("Vui lòng gọi lại cho Nguyễn Văn Hùng về việc hoàn tiền.", "Nguyễn Văn Hùng"),  # Vietnamese
    ("The refund for محمد العلي was approved.", "محمد العلي"),  # Arabic script inside English
]


@pytest.mark.parametrize(("text", "name"), MULTILINGUAL_NAMES, ids=[n for _, n in MULTILINGUAL_NAMES])
def test_names_in_other_languages_and_scripts_are_found(scrubber, text, name):
    found = [text[s.start : s.end] for s in scrubber.find(text) if s.type == "PERSON"]
    assert any(name in f for f in found), found
    assert name not in scrubber.scrub_text(text)


@pytest.mark.parametrize("text", [
    "Flights from Porto Alegre to Santa Maria are delayed.",  # places that read like names
    "Sandström Larsson AB moved its support desk to Malmö.",  # a company made of surnames
    "Export the Quarterly Sales Report for the Board Meeting.",
    "東京駅の近くにある店舗で受け取れます。", "The warehouse in 板橋区 ships on weekdays.",  # a surname opening a place
    "您的订单已发货，预计明天送达。", "请联系我们确认退款事宜。",  # a cue with no name after it
    "주문하신 상품이 내일 배송됩니다.", "The New Year Promotion ends in all 기니 stores.", "Flights from Oslo to 성남시 are late.",
    "आपका ऑर्डर कल तक पहुंच जाएगा।", "Flights from Mumbai to चित्रकूट are delayed.",
    "Ваш заказ будет доставлен завтра из Москвы.", "Siparişiniz yarın İstanbul deposundan gönderilecek.",
])
def test_the_gazetteer_rules_leave_places_companies_and_plain_sentences_alone(text):
    from protege.curate.names import script_names

    assert [text[s:e] for s, e in script_names(text)] == []


@pytest.mark.parametrize("number", ["13812345678", "11987654321", "89161234567", "79161234567", "05321234567",
                                    "09012345678", "01012345678"])
def test_eleven_digit_mobiles_without_separators(scrubber, number):
    assert scrubber.scrub_text(f"WhatsApp {number} for updates.") == "WhatsApp <PHONE_1> for updates."
    assert scrubber.scrub_text(f"{number} is the number on the account.") == "<PHONE_1> is the number on the account."


def test_a_number_after_my_number_is_a_phone(scrubber):
    assert scrubber.scrub_text("My number is 351 7026 9566, text me.") == "My number is <PHONE_1>, text me."
    assert scrubber.find("Your order number is 351702695.") == []


@pytest.mark.parametrize("text", ["Contact: {n}", "Please contact me at {n} tomorrow.", "{n} is the number on the account.",
                                  "{n} is my phone number."])
def test_a_bare_number_beside_a_contact_cue_is_a_phone(scrubber, text):
    """Nine to eleven digits in no national shape (33053658848, 340035790): the cue says what they are."""
    for n in ("33053658848", "340035790"):
        assert scrubber.scrub_text(text.format(n=n)) == text.format(n="<PHONE_1>")
    for other in ("Order 340035790 is the order number.", "Please contact 3 people about ticket 340035790.",
                  "Contacted 2 customers; refund 340035790 is pending."):
        assert scrubber.find(other) == []


def test_ids_that_are_not_mobiles_stay(scrubber):
    text = "Invoice 20240315001 was paid; order 58213, SKU 12345678, batch 10024031500 ship Friday."
    assert scrubber.find(text) == []


@pytest.mark.parametrize("iban", ["DE89370400440532013000", "DE89 3704 0044 0532 0130 00", "de89370400440532013000",
                                  "de89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "gb82 west 1234 5698 7654 32",
                                  "FR1420041010050500013M02606", "fr14 2004 1010 0505 0001 3m02 606"])
def test_iban_spellings(scrubber, iban):
    assert scrubber.scrub_text(f"Please refund to IBAN {iban} by Friday.") == "Please refund to IBAN <IBAN_1> by Friday."


def test_iban_lookalikes_with_a_bad_checksum_stay(scrubber):
    assert "IBAN" not in [s.type for s in scrubber.find("Please refund to de88370400440532013000 by Friday.")]


@pytest.mark.parametrize("text", ["The warehouse ships orders from Tanguy Camus S.A.S. on weekdays.",
                                  "Luisina Blanco Vaquero S.L. moved its support desk to Ceuta.",
                                  "Öcalan İnönü San. moved its support desk last year.", "Orders from Türk A.Ş. ship today."])
def test_a_name_followed_by_a_legal_form_is_a_company(scrubber, text):
    assert [s for s in scrubber.find(text) if s.type == "PERSON"] == []


def test_a_person_beside_company_words_is_still_a_person(scrubber):
    assert scrubber.scrub_text("Please call Maria Santos, SA office.") == "Please call <PERSON_1>, SA office."
    assert scrubber.scrub_text("Anna Schmidt und Peter Müller kommen morgen.") == "<PERSON_1> und <PERSON_2> kommen morgen."
