"""What people's judgements teach: ratings, preferences and expansions become SFT and reward pairs."""

from __future__ import annotations

from streams.records import ExpansionLabel, LabelRecorded, PreferenceLabel, RatingLabel
from trainer import data


def label_event(label_id: str, label, action: str = "created") -> LabelRecorded:
    return LabelRecorded(label_id=label_id, source="api", annotator="a", action=action, label=label)


def rating(prompt: str, completion: str, value: str, target: str | None = None) -> RatingLabel:
    return RatingLabel(prompt=prompt, completion=completion, rating=value, target=target)


def labels_of(**by_id) -> data.LabelSet:
    return data.current_labels([label_event(label_id, label) for label_id, label in by_id.items()])


def test_rating_labels_are_kept_per_label_id_like_the_others():
    labels = data.current_labels(
        [
            label_event("r1", rating("Rain", "wet and grey", "up")),
            label_event("r1", rating("Rain", "wet and grey", "down"), action="updated"),
            label_event("r2", rating("Sun", "bright", "up")),
            label_event("r2", rating("Sun", "bright", "up"), action="deleted"),
        ]
    )
    assert labels.rating == {"r1": rating("Rain", "wet and grey", "down")}


def test_thumbs_up_and_expansion_labels_become_sft_pairs_shown_as_the_api_shows_them():
    labels = labels_of(
        e1=ExpansionLabel(prompt="A visit to the park", completion="It was green."),
        r1=rating("Market day", "Stalls everywhere.", "up"),
        r2=rating("Market day", "Nothing at all.", "down"),
        r3=rating("Already shown\n\n", "Kept as is.", "up"),
    )
    pairs = data.labelled_expansions(labels)
    assert [(pair.prompt, pair.completion, pair.url) for pair in pairs] == [
        ("A visit to the park\n\n", "It was green.", "label:e1"),
        ("Market day\n\n", "Stalls everywhere.", "label:r1"),
        ("Already shown\n\n", "Kept as is.", "label:r3"),
    ]


def test_up_is_chosen_over_down_on_the_same_prompt_and_target_only():
    labels = labels_of(
        a=rating("Rain", "soft rain, lovely", "up"),
        b=rating("Rain", "cold rain, awful", "down"),
        c=rating("Rain", "grey rain", "down"),
        d=rating("Sun", "no pair: no thumbs down on this prompt", "up"),
        e=rating("Rain", "down toward another target", "down", target="negative"),
    )
    pairs = {(pair.chosen, pair.rejected) for pair in data.judged_pairs(labels, "positive")}
    assert pairs == {
        ("Rain\n\nsoft rain, lovely", "Rain\n\ncold rain, awful"),
        ("Rain\n\nsoft rain, lovely", "Rain\n\ngrey rain"),
    }


def test_judgements_toward_the_other_target_are_flipped_for_the_anchor_reward_model():
    labels = labels_of(
        a=rating("Rain", "gloomy and bleak", "up", target="negative"),
        b=rating("Rain", "sunny after all", "down", target="negative"),
        p=PreferenceLabel(prompt="Rain", chosen="dreadful", rejected="delightful", target="Negative"),
        q=PreferenceLabel(prompt="Rain", chosen="delightful", rejected="dreadful"),
    )
    pairs = {(pair.chosen, pair.rejected) for pair in data.judged_pairs(labels, "positive")}
    assert pairs == {
        ("Rain\n\nsunny after all", "Rain\n\ngloomy and bleak"),
        ("Rain\n\ndelightful", "Rain\n\ndreadful"),
    }


def test_reward_sign_is_plus_for_the_anchor_and_no_target_minus_for_any_other_label():
    assert data.reward_sign("positive", "positive") == data.reward_sign(" Positive ", "positive") == 1
    assert data.reward_sign(None, "positive") == 1
    assert data.reward_sign("negative", "positive") == data.reward_sign("neutral", "positive") == -1


def test_build_trains_on_rated_and_approved_expansions_and_rating_pairs(make_pages, make_labels):
    events = make_labels(10) + [
        label_event("r1", rating("Rain", "soft rain", "up")),
        label_event("r2", rating("Rain", "cold rain", "down")),
        label_event("e1", ExpansionLabel(prompt="Snow", completion="White everywhere.")),
    ]
    built = data.build(make_pages(10), events, "positive")
    assert {"Rain\n\n", "Snow\n\n"} <= set(built.train_prompts)
    assert data.PreferencePair("Rain\n\nsoft rain", "Rain\n\ncold rain") in built.reward_pairs
    # The judge's share of the sentiment labels never reaches the reward model.
    reward_share = data.split_labels(built.labels.sentiment).reward
    assert len(built.reward_pairs) == len(data.preference_pairs(reward_share, "positive")) + 1
    assert built.stats()["rating_labels"] == 2 and built.stats()["expansion_labels"] == 1


def test_the_reward_model_never_sees_the_judges_share_of_the_sentiment_labels(make_pages, make_labels):
    built = data.build(make_pages(10), make_labels(40), "positive")
    judge_texts = {label.text for label in data.split_labels(built.labels.sentiment).judge.values()}
    assert judge_texts, "the fixture labels should give the judge a share"
    paired = {text for pair in built.reward_pairs for text in (pair.chosen, pair.rejected)}
    assert not judge_texts & paired
