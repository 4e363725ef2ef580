"""Decoding uploads that are not UTF-8: short rows, long files, and many encodings."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice_common.errors import ApiError
from sluice_common.tables.encoding import GUESS_SAMPLE, decode_text, looks_western
from sluice_common.tables.parsing import parse_csv, parse_small_csv

# Names, cities and notes as they appear in customer files, per language.
WESTERN = (
    "José María Zoë Émile René Jürgen Søren Björn Åsa Inês João Conceição Günther Noël Chloé "
    "Hélène Ramón Begoña Ángel Raúl Joaquín Anaïs Gonçalo Íñigo Nicolò Þórður Ægir Müller "
    "Schröder Gonçalves Núñez Pérez Lefèvre García Jørgensen Öberg Weiß Simões Brandão Ibáñez "
    "Peña Åström São_Paulo Zürich Málaga Besançon Köln München Genève Montréal Bogotá Göteborg "
    "Århus Düsseldorf Córdoba Brasília Nîmes Orléans Cádiz Medellín Forlì Tromsø Næstved "
    "Saint-Étienne café_crème déjà naïve façade jalapeño smörgåsbord Straße ação coração "
    "cañón año prix_–_12_€ l’été “urgent” Größe n.º_5 20_m² più città perché col·legi "
    "història créée «à_bientôt» ¿qué_tal? £5_fee 20_°C Anna Peter Lucas Paris Madrid Berlin"
).split()
ASCII = "John Mary James Linda Smith Jones London Boston paid new_order call_back".split()
RUSSIAN = (
    "Иван Мария Алексей Ольга Дмитрий Наталья Сергей Екатерина Пётр Иванов Петрова Смирнов "
    "Кузнецова Фёдорова Москва Санкт-Петербург Новосибирск Казань Нижний_Новгород Самара Уфа "
    "Пермь постоянный_клиент новый_заказ оплачено доставка_завтра скидка_5% ООО_Ромашка"
).split()
GREEK = (
    "Γιώργος Μαρία Νίκος Ελένη Κώστας Αικατερίνη Δημήτρης Σοφία Παπαδόπουλος Νικολάου "
    "Οικονόμου Αθήνα Θεσσαλονίκη Πάτρα Ηράκλειο Λάρισα Βόλος Χανιά τακτικός_πελάτης "
    "νέα_παραγγελία πληρώθηκε παράδοση_αύριο έκπτωση_5%"
).split()
JAPANESE = (
    "佐藤太郎 鈴木花子 高橋さくら 田中健太 伊藤美咲 渡辺ひろし 山本翔太 東京 大阪 "
    "横浜 名古屋 札幌 福岡 京都 さいたま 常連客 新規注文 支払い済み 明日配達 ポイント会員 返品"
).split()
CHINESE = (
    "张伟 王芳 李娜 刘洋 陈静 杨磊 赵敏 黄丽 北京 上海 广州 深圳 成都 杭州 "
    "武汉 西安 老客户 新订单 已付款 明天送货 会员折扣 退货"
).split()
POLISH = (
    "Łukasz Małgorzata Paweł Michał Agnieszka Wojciech Grzegorz Żaneta Jędrzej Bożena Nowak "
    "Wiśniewski Wójcik Kamińska Zieliński Woźniak Dąbrowski Kozłowski Jabłońska Król Zając "
    "Łódź Kraków Wrocław Gdańsk Poznań Białystok Rzeszów Częstochowa Toruń stały_klient "
    "nowe_zamówienie zapłacono zadzwonić_po_południu zniżka_5%"
).split()
CZECH = (  # no ť or Ť: those bytes alone rule cp1252 out, without them Czech is the hard case
    "Jiří Petr Jana Tomáš Lucie Kateřina Věra Zdeněk Lukáš Markéta Ondřej Novák Svoboda "
    "Dvořák Černý Procházka Kučera Veselý Němec Pokorný Pospíšilová Jelínek Růžička Praha "
    "Brno Plzeň Olomouc České_Budějovice Hradec_Králové Ústí_nad_Labem Zlín Třebíč "
    "stálý_zákazník nová_objednávka zaplaceno doručení_zítra sleva_5_%"
).split()


def csv_text(words: list[str], rows: int, seed: int = 0, mixed_with: list[str] = ()) -> str:
    """A header and `rows` rows of words; with mixed_with, 9 rows in 10 come from it."""
    rng = random.Random(seed)
    lines = ["name,city,age,amount,note"]
    for i in range(rows):
        pool = mixed_with if mixed_with and i % 10 else words
        name, city, note = (rng.choice(pool).replace("_", " ") for _ in range(3))
        lines.append(f"{name},{city},{rng.randint(18, 90)},{rng.uniform(1, 500):.2f},{note}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text",
    [
        "name,city\nJosé,São Paulo\n",
        "José",
        "São Paulo",
        "name\nZoë\n",
        "city,amount\nZürich,12\n",
        "note\nprix – 12 €\n",
        "name,note\nNoël,“urgent”\n",
    ],
)
def test_one_short_cp1252_row_decodes_as_cp1252(text):
    assert decode_text(text.encode("cp1252")) == (text, "cp1252")


@pytest.mark.parametrize("rows", [1, 3, 10, 100, 1000, 5000])
@pytest.mark.parametrize("mixed", [False, True], ids=["western", "mostly-ascii"])
def test_cp1252_files_of_any_length_decode_as_cp1252(rows, mixed):
    text = csv_text(WESTERN, rows, seed=rows, mixed_with=ASCII if mixed else ())
    assert decode_text(text.encode("cp1252")) == (text, "cp1252")


@pytest.mark.parametrize("rows", [1, 10, 1000])
def test_latin1_files_decode_exactly(rows):
    text = csv_text([w for w in WESTERN if w.isalpha()], rows, seed=rows)
    assert decode_text(text.encode("latin-1")) == (text, "cp1252")  # same characters


@pytest.mark.parametrize(
    ("codec", "words"),
    [
        ("cp1251", RUSSIAN),
        ("cp1253", GREEK),
        ("cp932", JAPANESE),
        ("gbk", CHINESE),
        ("cp1250", POLISH),
        ("cp1250", CZECH),
    ],
    ids=["ru", "el", "ja", "zh", "pl", "cs"],
)
@pytest.mark.parametrize("rows", [100, 1000])
def test_long_non_western_files_decode_exactly(codec, words, rows):
    text = csv_text(words, rows, seed=rows)
    decoded, encoding = decode_text(text.encode(codec))
    assert decoded == text
    assert encoding != "cp1252"


@pytest.mark.parametrize(
    ("codec", "words"),
    [("cp1251", RUSSIAN), ("cp1253", GREEK), ("cp932", JAPANESE), ("gbk", CHINESE)],
    ids=["ru", "el", "ja", "zh"],
)
@pytest.mark.parametrize("seed", range(10))
def test_short_non_western_rows_are_never_read_as_cp1252(codec, words, seed):
    # One row is too short for charset-normalizer to be sure of the encoding, but cp1252,
    # which would win for Western text, must not claim it.
    raw = csv_text(words, 1, seed).encode(codec)
    assert decode_text(raw)[1] != "cp1252"


def test_cp1252_mojibake_of_other_scripts_does_not_look_western():
    assert not looks_western("Èâàí,Ìîñêâà")  # Иван,Москва in cp1251
    assert not looks_western("Ãéþñãïò,ÁèÞíá")  # Γιώργος,Αθήνα in cp1253
    assert not looks_western("±±¾©,ÉÏº£")  # 北京,上海 in GBK
    assert not looks_western("ƒJƒ^ƒJƒi")  # カタカナ in Shift-JIS
    assert not looks_western("Za¿ó³æ gêœl¹")  # Zażółć gęślą in cp1250
    assert not looks_western("Jiøí Dvoøák,Nìmec")  # Jiří Dvořák,Němec in cp1250
    assert looks_western("José,São Paulo,Größe,ação,¿qué?,20 °C,l’été,€€€,m²")


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize(
    "words", [ASCII, WESTERN, RUSSIAN, CHINESE], ids=["ascii", "western", "ru", "zh"]
)
@pytest.mark.parametrize("rows", [1, 1000])
def test_utf16_without_bom_decodes_exactly(codec, words, rows):
    text = csv_text(words, rows, seed=rows)
    assert decode_text(text.encode(codec)) == (text, codec)


def test_utf8_comes_first_even_when_cp1252_would_also_decode():
    text = "name,city\nJosé,São Paulo\n"
    assert decode_text(text.encode("utf-8")) == (text, "utf-8")  # also valid cp1252 bytes


def test_accents_past_the_sample_still_decode_the_whole_upload():
    head = "name,city\n" + "Anna,Paris\n" * (GUESS_SAMPLE // 11 + 1)
    text = head + "José,São Paulo\n"
    assert decode_text(text.encode("cp1252")) == (text, "cp1252")


def test_a_byte_cp1252_lacks_is_never_reported_as_cp1252():
    raw = "name,city\nJosé,São Paulo\n".encode("cp1252") + b"\x81\n"
    try:
        _, encoding = decode_text(raw)
    except ApiError as err:
        assert err.code == "not_csv"
    else:
        assert encoding != "cp1252"


@pytest.mark.parametrize(
    "raw",
    [
        bytes(range(256)) * 8,
        random.Random(1).randbytes(5000),
        b"\x89PNG\r\n\x1a\n" + random.Random(2).randbytes(3000),
        b"\x00\x01" * 200,
        b"PK\x03\x04" + bytes(200),
    ],
    ids=["all-bytes", "random", "png", "nul-pairs", "zip"],
)
def test_binary_data_is_not_csv(raw):
    with pytest.raises(ApiError) as err:
        decode_text(raw)
    assert err.value.code == "not_csv"


def test_empty_upload_is_empty_file():
    with pytest.raises(ApiError) as err:
        decode_text(b" \n")
    assert err.value.code == "empty_file"


def test_parsers_read_a_short_cp1252_row():
    raw = "name,city\nJosé,São Paulo\n".encode("cp1252")
    parsed = parse_csv(raw)
    assert parsed.encoding == "cp1252"
    assert parsed.frame.to_dict("list") == {"name": ["José"], "city": ["São Paulo"]}
    small = parse_small_csv(raw)
    assert small is not None and small.encoding == "cp1252"
    assert small.columns == {"name": ["José"], "city": ["São Paulo"]}


def test_parse_csv_reads_utf16_without_bom():
    text = "name,city\nИван,Москва\nZoë,Genève\n"
    parsed = parse_csv(text.encode("utf-16-le"))
    assert parsed.encoding == "utf-16-le"
    assert parsed.frame["city"].tolist() == ["Москва", "Genève"]


_ACCENTED = "áéíóúàèâêîôûäëïöüçñãõåøæœßÁÉÍÓÚÀÂÊÔÄÖÜÇÑÃÕÅØÆŒ"
_western_words = st.builds(
    lambda head, accent, tail: head + accent + tail,
    st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=8),
    st.sampled_from(_ACCENTED) | st.just(""),
    st.text("abcdefghijklmnopqrstuvwxyz", max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(_western_words | st.integers(0, 10**6).map(str), min_size=1, max_size=5),
        min_size=1,
        max_size=20,
    )
)
def test_western_words_in_cp1252_decode_exactly(rows):
    text = "\n".join(",".join(row) for row in rows) + "\n"
    if text.isascii() or not text.strip():
        return
    assert decode_text(text.encode("cp1252")) == (text, "cp1252")


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1))
def test_any_utf8_text_decodes_as_utf8(text):
    if not text.strip():
        return
    assert decode_text(text.encode("utf-8")) == (text, "utf-8")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text("абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИК", min_size=3), min_size=1))
def test_russian_words_read_as_cp1252_never_look_western(words):
    raw = ",".join(words).encode("cp1251")
    assert not looks_western(raw.decode("cp1252"))


def test_compressed_files_and_workbooks_are_named_in_the_answer():
    import bz2
    import gzip
    import lzma
    import zipfile

    csv_bytes = b"a,b\n1,2\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("data.csv", csv_bytes)
    for raw, word in [
        (gzip.compress(csv_bytes), "gzip"),
        (archive.getvalue(), "Excel"),
        (bz2.compress(csv_bytes), "bzip2"),
        (lzma.compress(csv_bytes), "xz"),
        (b"%PDF-1.7\n" + bytes(range(256)), "PDF"),
    ]:
        with pytest.raises(ApiError) as err:
            decode_text(raw)
        assert err.value.code == "not_csv" and word in err.value.message
