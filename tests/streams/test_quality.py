from lxml import etree

from streams.quality import boilerplate_reason


def _body(inner: str):
    return etree.fromstring(f"<body>{inner}</body>")


ARTICLE_PARAGRAPH = "<p>" + "The ferry crossed the river slowly in the morning fog. " * 6 + "</p>"


def test_an_article_body_is_not_boilerplate():
    assert boilerplate_reason(_body(ARTICLE_PARAGRAPH * 3)) is None


def test_an_empty_body_is_not_judged_here():
    assert boilerplate_reason(_body("")) is None


def test_mostly_link_text_is_boilerplate():
    links = (
        "<p>" + " ".join(f"<ref target='/{n}'>Another story about ferries number {n}</ref>" for n in range(10)) + "</p>"
    )

    assert boilerplate_reason(_body(ARTICLE_PARAGRAPH + links)) == (
        "boilerplate only: 52% of the main text is link text (limit 50%)"
    )


def test_a_list_of_linked_headlines_with_teasers_is_boilerplate():
    items = "".join(
        f"<item><ref target='/{n}'>Headline {n}</ref><p>A teaser sentence that says a little about story {n}.</p></item>"
        for n in range(6)
    )

    reason = boilerplate_reason(_body(f"<list>{items}</list>"))

    assert reason == "boilerplate only: a list of 6 linked headlines holds 100% of the main text (limit 60%)"


def test_a_short_list_of_links_under_an_article_is_not_boilerplate():
    items = "".join(f"<item><ref target='/{n}'>Source {n}</ref> and a note</item>" for n in range(4))

    assert boilerplate_reason(_body(ARTICLE_PARAGRAPH * 2 + f"<list>{items}</list>")) is None
