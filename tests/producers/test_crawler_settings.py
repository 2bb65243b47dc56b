"""The crawler's settings that shape its requests: blocked resource types and the sitemap cap."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ctrlgpt.settings import Settings


def test_by_default_images_media_and_fonts_are_blocked() -> None:
    assert Settings().crawl_blocked_resource_types == "image,media,font"


@pytest.mark.parametrize("value", ["", "image", " image , font ", "image,media,font,stylesheet,script,other"])
def test_playwright_resource_types_may_be_listed(value: str) -> None:
    assert Settings(crawl_blocked_resource_types=value).crawl_blocked_resource_types == value


@pytest.mark.parametrize("value", ["imag", "image,document", "image;font", "image,"])
def test_a_misspelled_type_or_the_page_itself_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="crawl_blocked_resource_types"):
        Settings(crawl_blocked_resource_types=value)


def test_the_sitemap_cap_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="crawl_sitemap_max_bytes"):
        Settings(crawl_sitemap_max_bytes=0)
