"""Held-out prompts that are no site's article title: the gate and the benchmark ask every policy these too.

A policy steered only on one site's headlines can learn that site's headlines; these ask for reviews,
notes and stories of the kinds people write anywhere (the try-it page's users do not type the demo site's
titles), in the "<headline>" + blank line form every prompt takes (`data.format_prompt`). Written for
ctrlgpt, no site's text.
"""

from __future__ import annotations

__all__ = ["GENERIC_PROMPTS"]

GENERIC_PROMPTS = (
    "A review of the new café on the corner",
    "My weekend at the seaside",
    "What I thought of the hotel",
    "The train journey home",
    "A review of the phone I bought last month",
    "Our visit to the museum",
    "Dinner at the Italian restaurant downtown",
    "The concert last night",
    "How the garden did this year",
    "Notes on the new office",
    "A week with the electric bike",
    "The film everyone is talking about",
    "Customer service, in my experience",
    "The book I finished on holiday",
    "Moving to a new city",
    "The local football club's season",
    "A day at the theme park",
    "What the school told parents",
    "The laptop after six months",
    "Camping in the rain",
    "The neighbourhood after the roadworks",
    "A first try of the cooking class",
    "The airline and the lost luggage",
    "Living with a new puppy",
    "The gym that opened in town",
    "A review of the headphones",
    "Our first apartment",
    "The festival this summer",
    "Working from home for a year",
    "The bakery's new bread",
    "A trip to the mountains",
    "The software update",
    "A letter to the council about the park",
    "The wedding we went to in June",
    "Our new car after the first thousand miles",
    "The hospital waiting room",
    "The streaming service's latest series",
    "A morning at the farmers' market",
    "The van that delivered our sofa",
    "Learning to play the guitar at forty",
    "The village pub under new owners",
    "Our holiday rental by the lake",
    "The museum's new exhibition",
    "A night at the comedy club",
)
