"""Bad input gets a clear ZooError and leaves the catalog unchanged (issue 3, acceptance 5)."""

from __future__ import annotations

import pytest
from catalog_fixtures import adapter_config, fake_digest

from zoo.errors import AdapterFormatError, InvalidNameError, NotFoundError, ZooError
from zoo.names import parse_tag, validate_name
from zoo.storage import catalog as api

BAD_NAMES = [
    "../x", "..", "a/../b", "/etc/passwd", "a/b", "a\\b", "C:\\x", "", "x" * 10_000,
    "a\x00b", "a\nb", "tab\tname", "with space", "\u202eevil", "zero\u200bwidth", "😀",
    "\udc80", "a@b", ".hidden", "-flag", "a..b",
]
BAD_TAGS = ["../x", "/abs", "a/b", "k=/etc", "k=", "=v", "t" * 257, "a b", "k=v\x07",
            "k=..", "\u202e"]


def test_bad_names_rejected_before_any_write(catalog, add, table_snapshot):
    add("keep", tags=["prod"], aliases=["prod"])
    before = table_snapshot()
    for name in BAD_NAMES:
        with pytest.raises(InvalidNameError) as info, catalog.transaction() as s:
            api.add_adapter(s, digest=fake_digest(name), size=1, config=adapter_config(),
                            name=name)
        message = str(info.value)
        assert message.isprintable() and len(message) < 400, message
    assert table_snapshot() == before


def test_bad_tags_and_aliases_rejected_before_any_write(catalog, add, table_snapshot):
    aid = add("keep")
    before = table_snapshot()
    for tag in BAD_TAGS:
        with pytest.raises(InvalidNameError), catalog.transaction() as s:
            api.add_adapter(s, digest=fake_digest(tag), size=1, config=adapter_config(),
                            name="fine", tags=["good", tag])
        with pytest.raises(InvalidNameError), catalog.transaction() as s:
            api.add_tags(s, aid, ["good", tag])
    for alias in ("keep@../x", "keep@", "@prod", "keep@a/b", "keep@" + "x" * 10_000,
                  "other@prod"):
        with pytest.raises(InvalidNameError), catalog.transaction() as s:
            api.add_adapter(s, digest=fake_digest(alias), size=1, config=adapter_config(),
                            name="keep", aliases=[alias])
        with pytest.raises(ZooError), catalog.transaction() as s:
            api.set_alias(s, alias, aid)
    assert table_snapshot() == before


def test_unknown_refs_change_nothing(catalog, add, table_snapshot):
    add("keep", aliases=["prod"])
    before = table_snapshot()
    for ref in ("nope@prod", "keep@nope", "0000000000", "zzzzzzzzzzzzzzzzzzzzzzzzzz", "../../x",
                "/etc/passwd", "x" * 10_000, ""):
        with pytest.raises(NotFoundError), catalog.transaction() as s:
            api.add_tags(s, ref, ["prod"])
        with pytest.raises(NotFoundError), catalog.transaction() as s:
            api.set_alias(s, "keep@prod", ref)
    with pytest.raises(NotFoundError), catalog.transaction() as s:
        api.remove_alias(s, "keep@nope")
    assert table_snapshot() == before


def test_bad_config_and_digest(catalog, table_snapshot):
    before = table_snapshot()
    cfg = adapter_config()
    del cfg["r"]
    cases = [
        ({"config": cfg}, AdapterFormatError, "'r'"),
        ({"config": {**adapter_config(), "rotation": "yes"}}, AdapterFormatError, "rotation"),
        ({"config": {**adapter_config(), "modules": {"m": {"in_features": "x"}}}},
         AdapterFormatError, "module 'm'"),
        ({"digest": "abc"}, InvalidNameError, "64 lower-case hex"),
        ({"digest": fake_digest(1).upper()}, InvalidNameError, "hex"),
        ({"size": -1}, AdapterFormatError, "size"),
    ]
    for override, exc, fragment in cases:
        kwargs = {"digest": fake_digest(0), "size": 1, "config": adapter_config(), "name": "n"}
        kwargs.update(override)
        with pytest.raises(exc, match=fragment), catalog.transaction() as s:
            api.add_adapter(s, **kwargs)
    assert table_snapshot() == before


def test_unicode_names_are_nfc_normalised(catalog, add):
    decomposed, composed = "cafe\u0301", "caf\u00e9"
    a = add(decomposed, seed="u")
    b = add(composed, seed="u")
    c = add("Модель-模型", seed="v")
    assert a == b != c
    with catalog.transaction(readonly=True) as s:
        assert api.resolve_ref(s, a).name == composed


def test_name_rules_documented_examples():
    assert validate_name("sentiment-v2.1_final") == "sentiment-v2.1_final"
    assert str(parse_tag("team=nlp")) == "team=nlp" and parse_tag("prod").value == ""
    assert parse_tag("stage=eval:2026+q1").value == "eval:2026+q1"
    with pytest.raises(InvalidNameError, match="U\\+202E"):
        validate_name("\u202eevil")
    with pytest.raises(InvalidNameError, match="10000 characters"):
        validate_name("x" * 10_000)
