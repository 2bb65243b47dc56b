"""How the crawler introduces itself to the sites it visits.

Its User-Agent is the product token and version (`user_agent`), plus `(+URL)` of the operator's
contact page when one is configured (`crawl_contact_url`): there is no made-up default address,
a crawl without one sends the product alone (and the crawler warns at start).
"""

from __future__ import annotations

__all__ = ["user_agent"]


def user_agent(product: str, contact_url: str | None) -> str:
    """The User-Agent header: `product`, then the contact URL in the `(+URL)` convention of crawlers if there is one."""
    return f"{product} (+{contact_url})" if contact_url else product
