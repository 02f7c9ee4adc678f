"""Mail text for people: HTML to text and the new part of a reply, linear on hostile input."""

from __future__ import annotations

import random
import time

import pytest

from channels.email.text import html_to_text, latest_reply, tidy_text


def test_html_blocks_become_lines_and_scripts_vanish() -> None:
    html = (
        "<html><head><style>p{}</style><title>x</title></head><body>"
        "<p>Hello&nbsp;&amp; welcome</p><div>a<br>b</div><ul><li>one</li><li>two</li></ul>"
        "<script>alert(1)</script></body></html>"
    )
    assert html_to_text(html) == "Hello & welcome\n\na\nb\n\n- one\n\n- two"


def test_broken_html_still_gives_its_text() -> None:
    assert html_to_text("<p>unclosed <b>bold <i>and <![CDATA[x").startswith("unclosed bold and")
    # "<>" is an (empty) tag and goes; every other character is text and stays.
    assert html_to_text("<<<>>>&&&;;;<p") == "<<>>&&&;;;<p"


def test_tidy_text_normalises_line_ends_and_blank_runs() -> None:
    assert tidy_text("a\r\nb\rc  \n\n\n\nd\x00\x07") == "a\nb\nc\n\nd"


@pytest.mark.parametrize(
    ("text", "newest"),
    [
        ("Thanks!\n\nOn Mon, 3 Mar 2025 at 10:00, Support <s@x.org> wrote:\n> old\n", "Thanks!"),
        ("Danke!\n\nAm 03.03.2025 um 10:00 schrieb Support <s@x.de>:\n> alt\n", "Danke!"),
        (
            "Merci !\n\nLe lun. 3 mars 2025 à 10:00, Support <s@x.fr> a écrit :\n> vieux\n",
            "Merci !",
        ),
        ("Yes.\n\n-----Original Message-----\nFrom: Support\nSent: Monday\n\nold", "Yes."),
        ("Fine.\n\n-- \nAnn Example\nACME Inc.", "Fine."),
        ("Sure.\n\nSent from my iPhone", "Sure."),
    ],
)
def test_latest_reply_keeps_only_the_new_text(text: str, newest: str) -> None:
    assert latest_reply(text) == newest


def test_a_mail_that_is_all_quote_keeps_its_text() -> None:
    assert latest_reply("> only a quote\n> nothing new") == "> only a quote\n> nothing new"


def test_reply_splitting_stays_fast_on_shapes_that_make_its_regexes_backtrack() -> None:
    # Unbounded, 60 000 newlines took mail-parser-reply 504 s.
    shapes = ["\n", "\r", " ", ">\n", "-\n", "_\n", "- \n", "\n\n>", "a" + " " * 60_000 + "b"]
    tokens = [
        "\n",
        " ",
        ">",
        "-",
        "_",
        "On Mon, A <a@b.c> wrote:",
        "From: x",
        "Sent: y",
        "Von:",
        "Am 1.1.2020 schrieb",
        "Best regards,",
        "Sent from my iPhone",
        "\t",
        "\u2028",
    ]
    rng = random.Random(7)
    inputs = [shape * (60_000 // len(shape)) for shape in shapes] + [
        "".join(rng.choice(tokens) for _ in range(rng.randint(100, 6_000))) for _ in range(40)
    ]
    for text in inputs:
        started = time.perf_counter()
        latest_reply(text)
        assert time.perf_counter() - started < 1.0, repr(text[:40])


def test_html_conversion_is_linear_on_unclosed_constructs() -> None:
    # html.parser on Python 3.11 took 16 s for the first of these.
    for shape in ("<!--", "</", "<", "<![CDATA[", "<a ", "<script>", "<!", "<?", "&#", "<p"):
        text = shape * (200_000 // len(shape))
        started = time.perf_counter()
        html_to_text(text)
        assert time.perf_counter() - started < 1.0, shape
