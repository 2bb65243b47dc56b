import hashlib
import unicodedata
from datetime import UTC, datetime

import pytest

from deploy.demo_site import load_articles, render_article, render_index
from streams.cleaning import (
    UNDETERMINED_LANGUAGE,
    PageRejected,
    clean_page,
    language_of,
    normalise_text,
    summarise,
)
from streams.records import PageFetched

ARTICLE = """<!doctype html>
<html lang="en">
<head>
  <title>Rivers of the North | Example News</title>
  <meta name="description" content="A long look at how northern rivers shape the towns along their banks.">
</head>
<body>
  <div id="cookie-banner" class="cookie-consent">We use cookies to improve your experience. Accept all cookies</div>
  <header><nav><ul>
    <li><a href="/">Home</a></li><li><a href="/world">World</a></li><li><a href="/sport">Sport</a></li>
  </ul></nav></header>
  <main><article>
    <h1>Rivers of the North</h1>
    <p>The rivers of the north run cold and fast through the spring, carrying snowmelt from the
       mountains down to the sea. Towns along their banks have grown around the water for centuries.</p>
    <p>Fishermen still work the estuaries at dawn, and the ferries that cross the wider rivers remain
       the quickest way between villages that face each other across the current.</p>
    <p>In recent years, engineers have studied how the floods change the shape of the valleys, and how
       the towns might adapt to wetter winters without losing what makes them special.</p>
  </article></main>
  <aside class="sidebar"><h3>Most read</h3><ul>
    <li><a href="/a">Celebrity chef opens restaurant</a></li><li><a href="/b">Ten tips for gardening</a></li>
  </ul></aside>
  <footer><p>Copyright 2024 Example News. All rights reserved.</p><a href="/privacy">Privacy policy</a></footer>
</body>
</html>"""

FRENCH = """<html lang="fr"><head><title>Le marché du samedi</title></head><body>
  <nav><a href="/">Accueil</a> <a href="/contact">Contact</a></nav>
  <article>
    <p>Chaque samedi matin, le marché s'installe sur la place de l'église. Les maraîchers arrivent avant
       l'aube pour disposer leurs légumes, leurs fruits et leurs fromages sur les étals.</p>
    <p>Les habitants du village viennent y faire leurs courses, mais aussi discuter entre voisins autour
       d'un café, pendant que les enfants courent entre les stands.</p>
  </article>
  <footer>Tous droits réservés.</footer>
</body></html>"""

LONG_PARAGRAPH = (
    "The harbour was quiet that morning, with only a few boats moving between the moorings. "
    "Gulls circled above the fish market while the traders set out their crates of ice. "
    "By nine o'clock the first visitors had arrived, looking for breakfast and a view of the sea."
)


def fetched(html: str, url: str = "https://news.example.com/rivers", **fields) -> PageFetched:
    final_url, status = fields.pop("final_url", url), fields.pop("status", 200)
    return PageFetched(url=url, final_url=final_url, crawl_id="crawl-1", status=status, html=html, **fields)


def test_article_keeps_the_main_text_and_drops_the_boilerplate():
    page = clean_page(fetched(ARTICLE))

    assert page.title == "Rivers of the North"
    assert page.summary == "A long look at how northern rivers shape the towns along their banks."
    assert page.language == "en"
    assert page.domain == "news.example.com"
    assert page.crawl_id == "crawl-1"
    paragraphs = page.text.split("\n\n")
    assert len(paragraphs) == 3
    assert paragraphs[0].startswith("The rivers of the north run cold and fast through the spring, carrying snowmelt")
    assert paragraphs[2].endswith("without losing what makes them special.")
    for boilerplate in ("cookies", "Home", "Sport", "Most read", "Celebrity chef", "Copyright", "Privacy"):
        assert boilerplate not in page.text
    assert page.content_sha256 == hashlib.sha256(page.text.encode()).hexdigest()


def test_page_identity_comes_from_the_final_url():
    page = clean_page(fetched(ARTICLE, url="http://example.com/r", final_url="https://News.Example.com:8443/rivers"))

    assert page.url == "https://News.Example.com:8443/rivers"
    assert page.domain == "news.example.com"


def test_summary_without_a_description_is_the_leading_sentences_within_the_bound():
    html = f"<html><head><title>Harbour</title></head><body><article><p>{LONG_PARAGRAPH}</p></article></body></html>"

    page = clean_page(fetched(html), max_summary_chars=200)

    assert page.summary == (
        "The harbour was quiet that morning, with only a few boats moving between the moorings. "
        "Gulls circled above the fish market while the traders set out their crates of ice."
    )


def test_french_page_is_detected_as_french():
    page = clean_page(fetched(FRENCH, url="https://village.example.fr/marche"))

    assert page.language == "fr"
    assert page.title == "Le marché du samedi"
    assert "Accueil" not in page.text and "droits réservés" not in page.text


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Die Flüsse des Nordens fließen im Frühling kalt und schnell durch die Täler bis zum Meer.", "de"),
        # CLD2 says "iw", the code withdrawn in 1989.
        ("הנהרות של הצפון זורמים קרים ומהירים באביב, ונושאים את מי ההפשרה מההרים אל הים.", "he"),
        ("北方的河流在春天又冷又急，把山上的雪水带到大海，沿岸的城镇围绕着河水生长了几个世纪。", "zh"),
        ("北方的河流在春天又冷又急，把山上的雪水帶到大海，沿岸的城鎮圍繞著河水生長了幾個世紀。", "zh-Hant"),
        ("12 345 — 678 !!!", UNDETERMINED_LANGUAGE),
        ("", UNDETERMINED_LANGUAGE),
    ],
)
def test_language_is_an_iso_code(text, language):
    assert language_of(text) == language


def test_language_of_text_with_characters_cld2_refuses_is_still_found():
    refused = "\x00\x1b\x7f\x85\ufdd0\ufffe\U0010ffff\ud800"
    text = refused.join(["The rivers of the north", "run cold and fast through the spring", "down to the sea."])

    assert language_of(text) == "en"


def test_title_falls_back_to_the_first_heading_of_the_main_text():
    html = f"<html><body><article><h3>The Harbour at Dawn</h3><p>{LONG_PARAGRAPH}</p></article></body></html>"

    page = clean_page(fetched(html))

    assert page.title == "The Harbour at Dawn"
    assert page.text == LONG_PARAGRAPH


def test_title_falls_back_to_the_first_sentence_without_any_heading():
    page = clean_page(fetched(f"<html><body><article><p>{LONG_PARAGRAPH}</p></article></body></html>"))

    assert page.title == "The harbour was quiet that morning, with only a few boats moving between the moorings."


def test_the_same_text_in_different_markup_has_the_same_sha():
    decomposed = unicodedata.normalize("NFD", "Café au lait, crème brûlée. ") * 12
    composed = unicodedata.normalize("NFC", decomposed)
    first = clean_page(fetched(f"<html><body><article><p>{decomposed}</p><p>{LONG_PARAGRAPH}</p></article></body>"))
    second = clean_page(
        fetched(
            f"<html><body><nav><a href='/x'>Menu</a></nav><div class='content'><p>\n  {composed}&nbsp;</p>\n"
            f"<p>{LONG_PARAGRAPH.replace(' ', '   ')}</p></div></body></html>",
            url="https://mirror.example.org/copy",
        )
    )

    assert first.text == second.text
    assert first.content_sha256 == second.content_sha256
    changed = clean_page(fetched(f"<html><body><p>{LONG_PARAGRAPH} And then it rained.</p></body></html>"))
    assert changed.content_sha256 != first.content_sha256


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ("", "empty HTML"),
        ("  \n\t ", "empty HTML"),
        ("<html><head><title>Nothing</title></head><body></body></html>", "no main text"),
        ("<html><body><p>Too short to be worth indexing.</p></body></html>", "fewer than the minimum 200"),
    ],
)
def test_a_page_without_usable_text_is_rejected_with_the_reason(html, reason):
    with pytest.raises(PageRejected, match=reason):
        clean_page(fetched(html))


def test_the_minimum_length_is_a_parameter():
    html = "<html><body><p>Too short to be worth indexing.</p></body></html>"

    assert clean_page(fetched(html), min_chars=10).text == "Too short to be worth indexing."


def test_error_pages_and_non_html_are_rejected():
    with pytest.raises(PageRejected, match="HTTP status 404"):
        clean_page(fetched(ARTICLE, status=404))
    with pytest.raises(PageRejected, match="not HTML"):
        clean_page(fetched(ARTICLE, content_type="application/pdf"))
    assert clean_page(fetched(ARTICLE, content_type="text/html; charset=utf-8")).title == "Rivers of the North"


def test_normalise_text_composes_unicode_and_collapses_spaces_but_keeps_line_breaks():
    assert normalise_text("  cafe\u0301\u00a0 au\tlait \n\n  second\u2003line  ") == "café au lait\nsecond line"


def test_summarise_cuts_an_overlong_first_sentence_at_a_word():
    assert summarise("one two three four five six seven eight nine ten", 20) == "one two three four…"


def test_the_published_date_comes_from_the_page_metadata():
    html = ARTICLE.replace(
        "<head>", '<head><meta property="article:published_time" content="2024-05-17T08:30:00+00:00">'
    )

    assert clean_page(fetched(html)).published == datetime(2024, 5, 17, tzinfo=UTC)


def test_a_page_that_states_no_date_has_none():
    assert clean_page(fetched(ARTICLE)).published is None


def test_the_demo_sites_articles_pass_with_the_date_of_their_byline():
    articles = load_articles()

    pages = [clean_page(fetched(render_article(a, articles), url=f"http://127.0.0.1:8090/{a.slug}")) for a in articles]

    assert len(pages) == len(articles)
    assert pages[0].published == datetime(2024, 3, 1, tzinfo=UTC)


def test_the_demo_sites_index_page_is_rejected_as_a_list_of_headlines():
    with pytest.raises(
        PageRejected, match=r"boilerplate only: a list of 30 linked headlines holds \d+% of the main text"
    ):
        clean_page(fetched(render_index(load_articles()), url="http://127.0.0.1:8090/"))


def test_a_page_of_mostly_link_text_is_rejected():
    links = " ".join(
        f'<a href="/tag/{n}">Further reading about the harbour and its boats, part {n}</a>' for n in range(12)
    )
    html = f"<html><body><article><p>{LONG_PARAGRAPH}</p><p>{links}</p></article></body></html>"

    with pytest.raises(PageRejected, match=r"boilerplate only: \d+% of the main text is link text \(limit 50%\)"):
        clean_page(fetched(html))


def test_an_article_with_a_few_links_is_kept_and_its_links_become_plain_text():
    html = f"<html><body><article><p>{LONG_PARAGRAPH}</p><p>See the <a href='/map'>harbour map</a>.</p></article></body></html>"

    page = clean_page(fetched(html))

    assert page.text.endswith("\n\nSee the harbour map.")
    assert "](" not in page.text and "/map" not in page.text
